"""One managed model server process: start, wait for readiness, restart with back-off, stop.

The replica's backend is unavailable until its ready path answers 200 and from the moment its
process exits, so the balancer never picks a server that is loading or dead; requests caught
on it when it dies fail before their first byte and the relay retries them elsewhere.

Each process leads its own process group (`start_new_session`), so SIGTERM and SIGKILL reach
the workers it forks too (vLLM's engine cores, tensor-parallel ranks), and nothing holding a
port or a GPU outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable

import aiohttp

from proxy.codeploy.settings import PLACEHOLDERS, ManagedSettings
from proxy.tasks import TaskOwner
from proxy.upstream import Backend, Group

log = logging.getLogger("warden.codeploy")
READY_POLL_S = 0.2
LOG_LINE_LIMIT = 1 << 20  # a longer line is cut (asyncio would otherwise raise on it)


def render(template: str, values: dict[str, str]) -> str:
    """Only the known placeholders are filled: a JSON argument's own braces pass through untouched."""
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template


class Replica:
    def __init__(self, group: Group, index: int, port: int, backend: Backend, settings: ManagedSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.group = group
        self.index = index
        self.port = port
        self.backend = backend
        self.settings = settings
        self.clock = clock
        self.name = f"{group.name}/{index}"
        gpu = settings.gpu_of(index)
        values = dict(zip(PLACEHOLDERS, (str(port), settings.host, gpu, str(index), group.name), strict=True))
        self.argv = [render(part, values) for part in settings.command]
        self.env = {k: render(v, values) for k, v in settings.env.items()}
        if gpu and "CUDA_VISIBLE_DEVICES" not in self.env:
            self.env["CUDA_VISIBLE_DEVICES"] = gpu
        self.state = "stopped"  # starting, ready, restarting, stopped
        self.restarts = 0
        self.last_exit: int | None = None
        self.ready_seconds: float | None = None  # how long the last start took to become ready
        self._proc: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._logs = TaskOwner(f"logs {self.name}")

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def describe(self) -> dict[str, object]:
        return {"replica": self.index, "url": self.backend.url, "state": self.state, "pid": self.pid,
                "restarts": self.restarts, "last_exit": self.last_exit}

    async def run(self, session: aiohttp.ClientSession) -> None:
        """Keep the server up until `stop`: every exit is followed by a restart after a growing back-off."""
        failures = 0
        while not self._stopping:
            self.state = "starting"
            started = self.clock()
            proc = await self._spawn()
            if proc is not None and await self._until_ready(proc, session):
                self.ready_seconds = self.clock() - started
                self.state = "ready"
                log.info("[%s] ready at %s after %.1fs (pid %d)", self.name, self.backend.url,
                         self.ready_seconds, proc.pid)
                self.backend.mark(True, "managed server ready")
                self.group.wake_all()
                ready_at = self.clock()
                await proc.wait()
                if self.clock() - ready_at >= self.settings.restart_backoff_max_s:
                    failures = 0  # it ran a good while: this crash starts the back-off over
            if proc is not None:
                await self._end(proc, grace_s=0.0)
                self.last_exit = proc.returncode
            self.backend.mark(False, f"managed server exited with {self.last_exit}")
            if self._stopping:
                break
            failures += 1
            self.restarts += 1
            self.state = "restarting"
            delay = min(self.settings.restart_backoff_s * 2 ** (failures - 1), self.settings.restart_backoff_max_s)
            log.error("[%s] server exited with %s; restarting in %.1fs (restart %d)", self.name, self.last_exit,
                      delay, self.restarts)
            await asyncio.sleep(delay)
        self.state = "stopped"

    async def _spawn(self) -> asyncio.subprocess.Process | None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env={**os.environ, **self.env}, cwd=self.settings.cwd,
                start_new_session=True, limit=LOG_LINE_LIMIT,
            )
        except OSError as exc:  # no such command, not executable: retried like a crash, and said loudly
            log.error("[%s] cannot start %s: %s", self.name, self.argv[0], exc)
            self.last_exit = None
            return None
        self._proc = proc
        log.info("[%s] started pid %d: %s", self.name, proc.pid, " ".join(self.argv))
        assert proc.stdout is not None
        self._logs.spawn(self._forward_logs(proc.stdout), "forward")
        return proc

    async def _forward_logs(self, stream: asyncio.StreamReader) -> None:
        """Drained always (a full pipe would stall the server), each line prefixed with the replica's name."""
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # over LOG_LINE_LIMIT: drop the rest of that line
                line = await stream.read(LOG_LINE_LIMIT)
            if not line:
                return
            log.info("[%s] %s", self.name, line.decode("utf-8", "replace").rstrip())

    async def _until_ready(self, proc: asyncio.subprocess.Process, session: aiohttp.ClientSession) -> bool:
        deadline = self.clock() + self.settings.start_timeout_s
        url = self.backend.url + self.settings.ready_path
        while proc.returncode is None:
            if self.clock() >= deadline:
                log.error("[%s] not ready within %gs; killing it", self.name, self.settings.start_timeout_s)
                return False
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2.0)) as resp:
                    await resp.read()
                    if resp.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(READY_POLL_S):
                    await proc.wait()
        return False

    async def _end(self, proc: asyncio.subprocess.Process, grace_s: float) -> None:
        """SIGTERM to the whole process group, SIGKILL after the grace; stragglers of the group are killed too."""
        if proc.returncode is None:
            self._signal(proc, signal.SIGTERM if grace_s > 0 else signal.SIGKILL)
            try:
                async with asyncio.timeout(grace_s or None):
                    await proc.wait()
            except TimeoutError:
                log.warning("[%s] ignored SIGTERM for %gs; killing it", self.name, grace_s)
                self._signal(proc, signal.SIGKILL)
                await proc.wait()
        self._signal(proc, signal.SIGKILL)  # children that outlived their parent

    def _signal(self, proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    async def stop(self, runner: asyncio.Task[None] | None) -> None:
        """Take it out of rotation, end the supervising loop, then the process (SIGTERM, grace, SIGKILL)."""
        self._stopping = True
        self.backend.mark(False, "managed server stopping")
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        if self._proc is not None:
            await self._end(self._proc, self.settings.stop_grace_s)
            self.last_exit = self._proc.returncode
        await self._logs.close(grace_s=2.0)
        self.state = "stopped"
