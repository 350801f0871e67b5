"""Starts the scanner process, waits until it answers, and restarts it with back-off when it dies.

Used by `warden serve` when `scanner.mode` is `managed`. The scanner is a separate process so a
crash in native model code cannot take the proxy down, and so one device is shared by every
proxy worker. With `scanner.workers: N` it runs N such processes, each on its own address and
each watched and restarted alone: the proxy's client spreads frames over them and sends a frame
whose worker died to another, so a crash costs a retry, not the scans in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time

from detectors.runtime.client import ScannerClient, ScannerError
from detectors.runtime.logs import LogFormat
from detectors.runtime.settings import ScannerSettings

log = logging.getLogger("warden.scanner.supervisor")


class ScannerStartError(RuntimeError):
    pass


def scanner_command(settings: ScannerSettings, log_format: LogFormat = "text") -> list[str]:
    return [sys.executable, "-m", "detectors.runtime", "--settings-json", settings.model_dump_json(),
            "--log-format", log_format]


class _Worker:
    """One scanner process slot: its settings (own address), command, probe and restart count."""

    def __init__(self, settings: ScannerSettings, command: list[str]) -> None:
        self.settings = settings
        self.command = command
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.probe = ScannerClient(settings.address, call_timeout_s=2.0, connect_timeout_s=0.5)


class ScannerSupervisor:
    def __init__(self, settings: ScannerSettings, command: list[str] | None = None,
                 log_format: LogFormat = "text") -> None:
        self.settings = settings
        self.command = command or scanner_command(settings.worker(0), log_format)
        self._workers = [_Worker(settings.worker(0), self.command)]
        self._workers += [_Worker(settings.worker(i), scanner_command(settings.worker(i), log_format))
                          for i in range(1, settings.workers)]
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def restarts(self) -> int:
        return sum(w.restarts for w in self._workers)

    @property
    def pid(self) -> int | None:
        """A live scanner's pid (the first's), or None when none is up."""
        return next(iter(self.pids), None)

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers if w.proc is not None and w.proc.returncode is None]

    async def start(self) -> None:
        """Every worker loaded and answering (they load side by side), then watched."""
        procs = await asyncio.gather(*(self._spawn_ready(w) for w in self._workers), return_exceptions=True)
        failed = [p for p in procs if isinstance(p, BaseException)]
        for worker, proc in zip(self._workers, procs, strict=True):
            if not isinstance(proc, BaseException):
                worker.proc = proc
        if failed:
            await self.stop()
            raise failed[0]
        for worker in self._workers:
            self._tasks.append(asyncio.create_task(self._watch(worker), name="scanner-supervisor"))
            self._tasks.append(asyncio.create_task(self._ping_loop(worker), name="scanner-health"))

    async def _spawn(self, worker: _Worker) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(*worker.command, stdin=asyncio.subprocess.DEVNULL)
        log.info("started scanner process %d", proc.pid)
        return proc

    async def _spawn_ready(self, worker: _Worker) -> asyncio.subprocess.Process:
        proc = await self._spawn(worker)
        try:
            return await self._until_ready(worker, proc)
        except BaseException:
            await self._terminate(proc, grace_s=2.0)  # never leave a half-started scanner behind
            raise

    async def _until_ready(self, worker: _Worker, proc: asyncio.subprocess.Process) -> asyncio.subprocess.Process:
        deadline = time.monotonic() + self.settings.ready_timeout_s
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise ScannerStartError(f"scanner exited with code {proc.returncode} before it was ready")
            try:
                tasks = await worker.probe.ping()
            except ScannerError:
                await asyncio.sleep(0.1)
                continue
            log.info("scanner %d ready: %s", proc.pid, {t: f"{i.device}/{i.dtype}" for t, i in tasks.items()})
            return proc
        raise ScannerStartError(f"scanner was not ready within {self.settings.ready_timeout_s:g}s")

    async def _watch(self, worker: _Worker) -> None:
        failures_in_a_row = 0
        while True:
            assert worker.proc is not None
            code = await worker.proc.wait()
            if self._stopping:
                return
            worker.restarts += 1
            failures_in_a_row += 1
            backoff = min(self.settings.restart_backoff_s * 2 ** (failures_in_a_row - 1),
                          self.settings.restart_backoff_max_s)
            log.error("scanner process exited with code %s; restarting in %.1fs (restart %d)", code, backoff,
                      worker.restarts)
            await asyncio.sleep(backoff)
            try:
                worker.proc = await self._spawn_ready(worker)
                failures_in_a_row = 0
            except ScannerStartError as exc:
                log.error("scanner restart failed: %s", exc)

    async def _ping_loop(self, worker: _Worker) -> None:
        """A scanner that is alive but no longer answers (a wedged driver, a deadlock) is killed;
        the watch loop then restarts it like any other crash."""
        missed = 0
        while True:
            await asyncio.sleep(self.settings.health_interval_s)
            proc = worker.proc
            if proc is None or proc.returncode is not None:
                missed = 0
                continue
            try:
                await worker.probe.ping(timeout_s=self.settings.health_interval_s)
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
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await asyncio.gather(*(self._terminate(w.proc) for w in self._workers if w.proc is not None))
        for worker in self._workers:
            await worker.probe.close()
