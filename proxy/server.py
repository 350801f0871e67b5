"""Running the proxy: site, signals, graceful shutdown, event loop choice.

Shutdown stops accepting, lets in-flight requests (streams included) finish for up to
`server.shutdown_grace_s`, then cancels what is left and closes the cleanup contexts.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import socket
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from prometheus_client import CollectorRegistry

from proxy.app.factory import create_app
from proxy.control.reload import reload_config
from proxy.control.supervisor import supervise
from proxy.exchange import Exchange
from proxy.governance.shared import HubLink, WorkerRole
from proxy.settings import WardenSettings, build_settings
from proxy.state import EXCHANGE, STATE
from proxy.tasks import TaskOwner
from proxy.telemetry.process import orphaned
from proxy.telemetry.wire import READY
from proxy.tracing.logs import access_logger, configure

log = logging.getLogger("warden.server")


async def start_runner(
    settings: WardenSettings, registry: CollectorRegistry | None = None, *, reuse_port: bool = False,
    config_path: Path | None = None, role: WorkerRole | None = None, sock: socket.socket | None = None,
) -> tuple[web.AppRunner, str]:
    """Start serving and return the runner with the base URL actually bound (port 0 picks one).

    A worker of `warden serve --workers N` (`role`) serves on the listening socket its supervisor made.
    """
    app = create_app(settings, registry, config_path, role)
    runner = QuietRunner(
        app,
        handler_cancellation=True,  # a client that disconnects cancels its upstream request
        shutdown_timeout=settings.server.shutdown_grace_s,
        keepalive_timeout=settings.timeouts.keepalive_s,  # aiohttp's AppRunner default is an hour
        access_log=logging.getLogger("warden.access") if settings.server.access_log else None,
        access_log_class=access_logger(_record_of),  # request id, tenant, model, backend, timings, verdict
    )
    await runner.setup()
    site: web.BaseSite = web.SockSite(runner, sock, backlog=1024) if sock is not None else web.TCPSite(
        runner, settings.listen.host, settings.listen.port, reuse_port=reuse_port or None, backlog=1024
    )
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


def _record_of(request: BaseRequest) -> Exchange | None:
    return request.get(EXCHANGE)


def fault(exc: HttpProcessingError) -> str:
    """The parser's description of the fault, without the bytes it quotes after it (or in quotes)."""
    described = str(exc.message).split("\n\n", 1)[0]
    for quote in ("b'", "'", '"'):
        described = described.partition(quote)[0]
    return " ".join(described.split()).rstrip(":")[:120]


class QuietRequestHandler(RequestHandler):
    """aiohttp answers a request its parser refuses (bare LF line endings, a bad header) with the
    parser's message, which quotes the raw bytes read so far: the API key, cookies, the body. It
    logs them too, at ERROR, in the traceback. Warden answers and logs only the kind of error."""

    __slots__ = ()

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        kind = f"{type(exc).__name__}: {fault(exc)}"
        log.info("malformed HTTP request from %s refused (%s)", request.remote, kind)
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already started; the connection is closed instead")
        response = web.Response(status=status, text=f"{status} {HTTPStatus(status).phrase}: malformed HTTP request "
                                                    f"({kind})\n")
        response.force_close()
        return response


class QuietServer(web.Server):
    def __call__(self) -> RequestHandler:
        return QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class QuietRunner(web.AppRunner):
    """An AppRunner whose connections are QuietRequestHandlers.

    The application builds a plain `web.Server` (with its request factory and startup hooks), and
    offers no way to name the handler class; its class is swapped for the one subclass that does.
    """

    __slots__ = ()

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = QuietServer
        return server


def settle_heap() -> None:
    """Freeze what startup built (modules, settings, clients, pools) out of the collector's sight.

    Those objects live for the whole run, yet every full collection walked them all: with
    ~160,000 objects after startup, gc callbacks showed a ~110-150 ms pause of the event loop
    every few seconds under load, and ~70 ms of collector time per second. A request leaves
    only a few objects behind (a telemetry row until its flush), so young collections every
    5,000 instead of 700 net allocations cut what remained (~45 ms/s) to ~6 ms/s.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(5000, 20, 10)


async def serve(
    settings: WardenSettings,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
    reuse_port: bool = False,
    config_path: Path | None = None,
    settle: bool = False,
    role: WorkerRole | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve until `stop`; `settle` (the CLI's choice, not a test's) freezes startup's heap."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    stopping = (signal.SIGTERM,) if role is not None else (signal.SIGTERM, signal.SIGINT)  # Ctrl-C: the supervisor's
    for sig in stopping:
        loop.add_signal_handler(sig, stop.set)
    runner, url = await start_runner(settings, reuse_port=reuse_port, config_path=config_path, role=role, sock=sock)
    if settle:
        settle_heap()
    reloads = TaskOwner("reload")
    app = runner.app
    assert isinstance(app, web.Application)
    loop.add_signal_handler(signal.SIGHUP, lambda: reloads.spawn(reload_config(app[STATE], "sighup"), "sighup"))
    groups = ", ".join(f"{g.name}={[b.url for b in g.backends]}" for g in settings.upstreams)
    log.info("Warden listening on %s (OpenAI base URL %s/v1); upstream groups: %s", url, url, groups)
    if on_ready is not None:
        on_ready(url)
    watch = TaskOwner("parent")
    if role is not None:
        role.hub.send(READY, role.index)
        watch.spawn(orphaned(stop), "parent")  # the supervisor gone: stop rather than serve unsupervised
    try:
        await stop.wait()
    finally:
        await watch.close(0)
        log.info("shutting down: waiting up to %gs for in-flight requests", settings.server.shutdown_grace_s)
        loop.remove_signal_handler(signal.SIGHUP)
        await reloads.close(5)
        await runner.cleanup()
        for sig in stopping:
            loop.remove_signal_handler(sig)
        log.info("stopped")


def run_loop(main: Coroutine[Any, Any, None], use_uvloop: bool) -> None:
    """Run on uvloop when asked and installed; the default loop otherwise."""
    factory = None
    if use_uvloop:
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            log.info("uvloop is not installed; using asyncio's default event loop")
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)


def run(
    settings: WardenSettings, *, reuse_port: bool = False, on_ready: Callable[[str], None] | None = None,
    config_path: Path | None = None, workers: int | None = None, log_level: str = "info",
) -> None:
    """One process, or (`workers`) a supervisor with that many workers (proxy/control/supervisor.py)."""
    if workers is not None:
        run_loop(supervise(settings, workers, config_path=config_path, log_level=log_level, on_ready=on_ready),
                 settings.server.uvloop)
        return
    run_loop(serve(settings, reuse_port=reuse_port, on_ready=on_ready, config_path=config_path, settle=True),
             settings.server.uvloop)


def run_worker(spec_path: Path, index: int, listen_fd: int, log_level: str = "info") -> None:
    """`warden worker`: one proxy worker, started by the supervisor with its settings and listening socket.
    It logs in the supervisor's `server.log_format` (its `--log-format` included), as every process does."""
    spec = json.loads(spec_path.read_text())
    settings = build_settings(spec["settings"])
    configure(log_level, settings.server.log_format)
    config_path = Path(spec["config_path"]) if spec["config_path"] else None
    run_dir = Path(spec["run_dir"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops its workers itself, in order

    async def main() -> None:
        hub = HubLink(run_dir / "hub.sock")
        await hub.open()
        role = WorkerRole(index, int(spec["workers"]), run_dir, hub, spec.get("admin_fd") if index == 0 else None)
        try:
            await serve(settings, config_path=config_path, settle=True, role=role,
                        sock=socket.socket(fileno=listen_fd))
        finally:
            await hub.close()

    run_loop(main(), settings.server.uvloop)
