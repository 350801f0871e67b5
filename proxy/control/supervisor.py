"""`warden serve --workers N`: one Warden per machine, on all its cores.

The supervisor owns the listening sockets (one per worker, `SO_REUSEPORT`, so the kernel spreads
connections evenly and a restarting worker's connections wait in its queue instead of being
refused), the admin socket (`admin.listen`: one, served by worker 0, whose restart finds it again
with its waiting connections), the host's shared limiter and abuse monitor
(proxy/governance/shared.py), the scanner (the managed
scanner supervisor), the telemetry process (proxy/telemetry/process.py) and N proxy workers
(`warden worker`, proxy/server.py). It restarts any of them that dies, with a growing pause,
logged and counted (`warden_process_restarts_total`), forwards SIGHUP (a reload in every worker)
and on SIGTERM drains in order: workers first (their rows reach the telemetry process), then
telemetry (flushes to the store or spool), then the scanner.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from detectors.runtime.supervisor import ScannerSupervisor
from proxy.governance.shared import HubServer, wait_for
from proxy.settings import ConfigError, WardenSettings
from proxy.telemetry.commands import telemetry_socket

log = logging.getLogger("warden.supervisor")
READY_TIMEOUT_S = 120.0


def usable_cores() -> int:
    """`auto`: the cores this process may run on (a container's cpuset, taskset), not the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def worker_count(value: str | int) -> int:
    if value == "auto":
        return usable_cores()
    count = int(value)
    if count < 1:
        raise ConfigError([f"--workers: {value} (give 1 or more, or auto)"])
    return count


class Keeper:
    """One child process kept alive: restarted after it exits, 0.5 s doubling to 30 s between tries
    while it keeps dying young (a child that ran 30 s before dying starts the pause over)."""

    def __init__(self, name: str, command: list[str], pass_fds: tuple[int, ...] = (),
                 backoff_s: tuple[float, float] = (0.5, 30.0), ready_socket: Path | None = None) -> None:
        """`ready_socket`: the child is up once something accepts there (else: once it runs)."""
        self.name = name
        self.ready_socket = ready_socket
        self.ready = False
        self.command = command
        self.pass_fds = pass_fds
        self.backoff_s = backoff_s
        self.restarts = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.on_exit: Callable[[], None] = lambda: None
        self.stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        await self._spawn()
        await self._until_ready()
        self._task = asyncio.create_task(self._watch(), name=f"keep-{self.name}")

    async def _until_ready(self) -> None:
        if self.ready_socket is None:
            self.ready = True
            return
        deadline = time.monotonic() + READY_TIMEOUT_S
        while self.alive and time.monotonic() < deadline:
            try:
                await wait_for(self.ready_socket, 0.0)
            except TimeoutError:
                await asyncio.sleep(0.05)
                continue
            self.ready = True
            return
        raise RuntimeError(f"{self.name} did not listen on {self.ready_socket} (see its log above)")

    async def _spawn(self) -> None:
        # The supervisor's process group (killpg and CPU accounting see the whole Warden); the children
        # ignore SIGINT, so a terminal's Ctrl-C reaches the supervisor alone, which stops them in order.
        self.proc = await asyncio.create_subprocess_exec(*self.command, pass_fds=self.pass_fds,
                                                         stdin=asyncio.subprocess.DEVNULL)
        log.info("started %s (pid %d)", self.name, self.proc.pid)

    async def _watch(self) -> None:
        delay = self.backoff_s[0]
        while True:
            assert self.proc is not None
            started = time.monotonic()
            code = await self.proc.wait()
            self.ready = False
            self.on_exit()
            if self.stopping:
                return
            if time.monotonic() - started > self.backoff_s[1]:
                delay = self.backoff_s[0]
            self.restarts += 1
            log.error("%s (pid %d) exited with %s; restart %d in %.1fs", self.name, self.proc.pid, code,
                      self.restarts, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_s[1])
            if self.stopping:
                return
            try:
                await self._spawn()
                await self._until_ready()
            except (OSError, RuntimeError) as exc:
                log.error("%s could not be started: %s", self.name, exc)

    def signal(self, sig: int) -> None:
        if self.alive:
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    async def stop(self, grace_s: float) -> None:
        """SIGTERM, then SIGKILL after `grace_s`."""
        self.stopping = True
        self.signal(signal.SIGTERM)
        if self.proc is not None:
            try:
                await asyncio.wait_for(self.proc.wait(), grace_s)
            except TimeoutError:
                log.error("%s did not stop within %gs; killing it", self.name, grace_s)
                self.signal(signal.SIGKILL)
                await self.proc.wait()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class Supervisor:
    def __init__(self, settings: WardenSettings, workers: int, *, config_path: Path | None = None,
                 log_level: str = "info") -> None:
        managed = [g.name for g in settings.upstreams if g.managed is not None]
        if managed:
            raise ConfigError([f"upstreams {', '.join(managed)}: managed model servers run with a single Warden "
                               "process; serve without --workers, or run the servers yourself"])
        self.settings = settings
        self.count = workers
        self.config_path = config_path
        self.log_level = log_level
        self.run_dir = Path(tempfile.mkdtemp(prefix="warden-"))  # 0700: the sockets' directory
        self.sockets: list[socket.socket] = []
        self.admin_socket: socket.socket | None = None
        self.admin_url = ""
        self.workers: list[Keeper] = []
        self.ready: set[int] = set()
        self.telemetry: Keeper | None = None
        self.scanner: ScannerSupervisor | None = None
        self.hub = HubServer(self.run_dir / "hub.sock", self.status, self.metrics_text, self._worker_ready,
                             abuse=settings.governance.abuse, on_reload=self._reload_siblings)
        self._all_ready = asyncio.Event()
        self.url = ""

    # -- what the workers ask (over the hub) -----------------------------------------------------

    def _worker_ready(self, index: int) -> None:
        self.ready.add(index)
        if len(self.ready) == self.count:
            self._all_ready.set()

    def _worker_gone(self, index: int) -> None:
        self.ready.discard(index)

    def _reload_siblings(self, index: int) -> None:
        """Worker `index` reloaded through the admin API: the others reload the same file."""
        log.info("worker %d reloaded its configuration (admin API); reloading the others", index)
        for other, worker in enumerate(self.workers):
            if other != index:
                worker.signal(signal.SIGHUP)

    def status(self) -> dict[str, Any]:
        up = sum(1 for i, w in enumerate(self.workers) if w.alive and i in self.ready)
        telemetry = "off" if self.telemetry is None else ("up" if self.telemetry.ready else "down")
        scanner = "off" if self.scanner is None else ("up" if self.scanner.pid is not None else "down")
        pids = [w.proc.pid if w.alive and w.proc is not None else None for w in self.workers]
        return {"workers": self.count, "workers_up": up, "telemetry": telemetry, "scanner": scanner,
                "pids": {"supervisor": os.getpid(), "workers": pids,
                         "telemetry": self.telemetry.proc.pid if self.telemetry and self.telemetry.proc else None},
                "ready": up == self.count and "down" not in (telemetry, scanner)}

    def metrics_text(self) -> str:
        restarts = {"worker": sum(w.restarts for w in self.workers),
                    "telemetry": self.telemetry.restarts if self.telemetry is not None else 0,
                    "scanner": self.scanner.restarts if self.scanner is not None else 0}
        status = self.status()
        lines = ["# HELP warden_process_restarts_total Warden's processes restarted by the supervisor after they "
                 "died.", "# TYPE warden_process_restarts_total counter"]
        lines += [f'warden_process_restarts_total{{process="{k}"}} {v}' for k, v in restarts.items()]
        lines += ["# HELP warden_workers Proxy workers the supervisor runs.", "# TYPE warden_workers gauge",
                  f"warden_workers {self.count}",
                  "# HELP warden_workers_up Proxy workers serving now.", "# TYPE warden_workers_up gauge",
                  f"warden_workers_up {status['workers_up']}"]
        return "\n".join(lines) + "\n"

    # -- lifecycle -----------------------------------------------------------------------------

    def _bind(self) -> None:
        """One listening socket per worker on one address; port 0 picks a port for all of them."""
        host, port = self.settings.listen.host, self.settings.listen.port
        for _ in range(self.count):
            sock = socket.create_server((host, port), backlog=1024, reuse_port=True)
            port = sock.getsockname()[1]
            self.sockets.append(sock)
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}"
        admin = self.settings.admin
        if admin.listen is not None:  # one admin socket for the host; worker 0 serves it (see _spec)
            family = socket.AF_INET6 if ":" in admin.host else socket.AF_INET
            self.admin_socket = socket.create_server((admin.host, admin.port), family=family, backlog=128)
            port = self.admin_socket.getsockname()[1]
            shown = f"[{admin.host}]" if ":" in admin.host else admin.host
            self.admin_url = f"http://{shown}:{port}"

    def _spec(self) -> Path:
        """The workers' settings, as validated here (the config file may change before a restart: a reload)."""
        spec = self.run_dir / "worker.json"
        fd = os.open(spec, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"settings": self.settings.model_dump(mode="json"), "workers": self.count,
                       "run_dir": str(self.run_dir),
                       "admin_fd": self.admin_socket.fileno() if self.admin_socket is not None else None,
                       "config_path": str(self.config_path) if self.config_path else None}, out)
        return spec

    async def start(self) -> None:
        self._bind()
        await self.hub.start()
        telemetry = self.settings.telemetry
        if telemetry.enabled:
            path = telemetry_socket(telemetry)
            self.telemetry = Keeper("telemetry process", [
                sys.executable, "-m", "proxy.telemetry.process", "--settings-json", telemetry.model_dump_json(),
                "--socket", str(path), "--log-level", self.log_level, "--log-format", self.settings.server.log_format,
                "--encryption-json", self.settings.encryption.model_dump_json()], ready_socket=path)
            await self.telemetry.start()
        scanner = self.settings.scanner
        if scanner.mode == "managed" and scanner.models:
            self.scanner = ScannerSupervisor(scanner, log_format=self.settings.server.log_format)
            await self.scanner.start()
        spec = self._spec()
        for index, sock in enumerate(self.sockets):
            fds: tuple[int, ...] = (sock.fileno(),)
            if index == 0 and self.admin_socket is not None:
                fds += (self.admin_socket.fileno(),)  # same number in the worker: the spec names it
            keeper = Keeper(f"worker {index}", [
                sys.executable, "-m", "proxy", "--log-level", self.log_level, "worker", "--spec", str(spec),
                "--index", str(index), "--listen-fd", str(sock.fileno())], pass_fds=fds)
            keeper.on_exit = functools.partial(self._worker_gone, index)
            self.workers.append(keeper)
            await keeper.start()
        try:
            await asyncio.wait_for(self._all_ready.wait(), READY_TIMEOUT_S)
        except TimeoutError:
            raise RuntimeError(f"{self.count - len(self.ready)} worker(s) not ready within {READY_TIMEOUT_S:g}s; "
                               "see their log above") from None

    def reload(self) -> None:
        log.info("SIGHUP: reloading the configuration in every worker")
        for worker in self.workers:
            worker.signal(signal.SIGHUP)

    async def stop(self) -> None:
        """Workers drain (they stop accepting, finish what is in flight, hand over their rows), then the rest."""
        for keeper in self.workers:
            keeper.stopping = True
        for sock in self.sockets:  # new connections go to the workers' copies only, closed as each drains
            sock.close()
        if self.admin_socket is not None:
            self.admin_socket.close()
        grace = self.settings.server.shutdown_grace_s + 10
        await asyncio.gather(*(w.stop(grace) for w in self.workers))
        if self.telemetry is not None:
            await self.telemetry.stop(self.settings.telemetry.insert_timeout_s + 30)
        if self.scanner is not None:
            await self.scanner.stop()
        await self.hub.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)


async def supervise(settings: WardenSettings, workers: int, *, config_path: Path | None = None,
                    log_level: str = "info", stop: asyncio.Event | None = None,
                    on_ready: Callable[[str], None] | None = None) -> None:
    """Run a supervised Warden until SIGTERM, SIGINT or `stop`."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    supervisor = Supervisor(settings, workers, config_path=config_path, log_level=log_level)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, supervisor.reload)
    try:
        started = asyncio.create_task(supervisor.start())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({started, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if started.done():
            started.result()
            log.info("Warden listening on %s (OpenAI base URL %s/v1) with %d workers, supervisor pid %d",
                     supervisor.url, supervisor.url, workers, os.getpid())
            if supervisor.admin_url:
                log.info("admin listening on %s, served by worker 0", supervisor.admin_url)
            if on_ready is not None:
                on_ready(supervisor.url)
            await stopped
        else:
            started.cancel()
            await asyncio.gather(started, return_exceptions=True)
    finally:
        log.info("shutting down: draining %d workers", workers)
        await supervisor.stop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        log.info("stopped")
