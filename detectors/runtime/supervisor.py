"""Starts the scanner process, waits until it answers, and restarts it with back-off when it dies.

Used by `warden serve` when `scanner.mode` is `managed`. The scanner is a separate process so a
crash in native model code cannot take the proxy down, and so one device is shared by every
proxy worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time

from detectors.runtime.client import ScannerClient, ScannerError
from detectors.runtime.settings import ScannerSettings

log = logging.getLogger("warden.scanner.supervisor")


class ScannerStartError(RuntimeError):
    pass


def scanner_command(settings: ScannerSettings) -> list[str]:
    return [sys.executable, "-m", "detectors.runtime", "--settings-json", settings.model_dump_json()]


class ScannerSupervisor:
    def __init__(self, settings: ScannerSettings, command: list[str] | None = None) -> None:
        self.settings = settings
        self.command = command or scanner_command(settings)
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._probe = ScannerClient(settings.address, call_timeout_s=2.0, connect_timeout_s=0.5)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    async def start(self) -> None:
        self._proc = await self._spawn_ready()
        self._watch_task = asyncio.create_task(self._watch(), name="scanner-supervisor")
        self._health_task = asyncio.create_task(self._ping_loop(), name="scanner-health")

    async def _spawn(self) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(*self.command, stdin=asyncio.subprocess.DEVNULL)
        log.info("started scanner process %d", proc.pid)
        return proc

    async def _spawn_ready(self) -> asyncio.subprocess.Process:
        proc = await self._spawn()
        try:
            return await self._until_ready(proc)
        except BaseException:
            await self._terminate(proc, grace_s=2.0)  # never leave a half-started scanner behind
            raise

    async def _until_ready(self, proc: asyncio.subprocess.Process) -> asyncio.subprocess.Process:
        deadline = time.monotonic() + self.settings.ready_timeout_s
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise ScannerStartError(f"scanner exited with code {proc.returncode} before it was ready")
            try:
                tasks = await self._probe.ping()
            except ScannerError:
                await asyncio.sleep(0.1)
                continue
            log.info("scanner %d ready: %s", proc.pid, {t: f"{i.device}/{i.dtype}" for t, i in tasks.items()})
            return proc
        raise ScannerStartError(f"scanner was not ready within {self.settings.ready_timeout_s:g}s")

    async def _watch(self) -> None:
        failures_in_a_row = 0
        while True:
            assert self._proc is not None
            code = await self._proc.wait()
            if self._stopping:
                return
            self.restarts += 1
            failures_in_a_row += 1
            backoff = min(self.settings.restart_backoff_s * 2 ** (failures_in_a_row - 1),
                          self.settings.restart_backoff_max_s)
            log.error("scanner process exited with code %s; restarting in %.1fs (restart %d)", code, backoff,
                      self.restarts)
            await asyncio.sleep(backoff)
            try:
                self._proc = await self._spawn_ready()
                failures_in_a_row = 0
            except ScannerStartError as exc:
                log.error("scanner restart failed: %s", exc)

    async def _ping_loop(self) -> None:
        """A scanner that is alive but no longer answers (a wedged driver, a deadlock) is killed;
        the watch loop then restarts it like any other crash."""
        missed = 0
        while True:
            await asyncio.sleep(self.settings.health_interval_s)
            proc = self._proc
            if proc is None or proc.returncode is not None:
                missed = 0
                continue
            try:
                await self._probe.ping(timeout_s=self.settings.health_interval_s)
                missed = 0
            except ScannerError as exc:
                missed += 1
                log.warning("scanner %d missed a health ping (%d in a row): %s", proc.pid, missed, exc)
                if missed >= self.settings.health_failures:
                    log.error("scanner %d is not answering; killing it for a restart", proc.pid)
                    proc.kill()
                    missed = 0

    async def _terminate(self, proc: asyncio.subprocess.Process, grace_s: float = 10.0) -> None:
        if proc.returncode is not None:
            return
        proc.terminate()
        try:
            async with asyncio.timeout(grace_s):
                await proc.wait()
        except TimeoutError:
            log.warning("scanner %d ignored SIGTERM for %gs; killing it", proc.pid, grace_s)
            proc.kill()
            await proc.wait()

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._health_task, self._watch_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._proc is not None:
            await self._terminate(self._proc)
        await self._probe.close()
