"""The control plane on its own address (`admin.listen`): /admin, /review and /metrics off the API port.

A second aiohttp Application serves them, holding the very same ProxyState as the API app, so a
key revoked, a review claimed or a counter read there is the one the API side sees. Two apps
rather than one app on two sockets: each side's router holds only its own routes, so the admin
address is no second door to /v1 and the API port has no admin route to forget to refuse (only
/metrics, added with the API routes, is refused there by a middleware). The admin app has no
resources of its own: one cleanup context of the API app starts its runner last and stops it
first, so it never serves a state that is not up.

Under `warden serve --workers N` the supervisor binds the admin address once and worker 0 serves
it (`WorkerRole.admin_fd`): one reviewer UI with its sessions, one place for admin calls, whose
state changes reach every worker through their owners (the keys file, the supervisor's abuse
monitor, a reload fanned out by the supervisor). When worker 0 dies, the socket stays open in
the supervisor: connections wait in its backlog and its restart serves them.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from proxy.control.admin import add_admin_routes
from proxy.errors import RouteNotFound
from proxy.governance.shared import WORKER
from proxy.routes import healthz, metrics_route, readyz
from proxy.state import STATE, ProxyState

log = logging.getLogger("warden.admin")
CONTROL_PREFIXES = ("/admin", "/review")


@dataclass
class AdminSite:
    """The admin app and, while it serves, the base URL it is bound to (port 0 picks one)."""

    app: web.Application
    url: str | None = None

    async def ctx(self, api_app: web.Application) -> AsyncIterator[None]:
        state = api_app[STATE]
        settings = state.settings
        runner = web.AppRunner(
            self.app,
            handler_cancellation=True,
            shutdown_timeout=settings.server.shutdown_grace_s,
            keepalive_timeout=settings.timeouts.keepalive_s,
            access_log=logging.getLogger("warden.access") if settings.server.access_log else None,
        )
        await runner.setup()
        try:
            role = self.app.get(WORKER)
            if role is not None and role.admin_fd is not None:  # the supervisor's socket, kept across restarts
                await web.SockSite(runner, socket.socket(fileno=role.admin_fd)).start()
            else:
                await web.TCPSite(runner, settings.admin.host, settings.admin.port).start()
            host, port = runner.addresses[0][:2]
            self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
            log.info("admin listening on %s (/admin, /review, /metrics); the API port answers 404 there", self.url)
            yield
        finally:
            self.url = None
            await runner.cleanup()


ADMIN_SITE = web.AppKey("warden_admin_site", AdminSite)


def admin_app(state: ProxyState, middlewares: list[Middleware]) -> web.Application:
    """The admin side's app: the admin API, metrics and the probes (review is added by the factory)."""
    app = web.Application(middlewares=middlewares, client_max_size=state.settings.limits.max_body_bytes)
    app[STATE] = state
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_route)
    add_admin_routes(app)
    return app


@web.middleware
async def control_plane_elsewhere(request: web.Request, handler: Handler) -> web.StreamResponse:
    """On the API port while admin.listen is set: what the admin address serves is not found here."""
    path = request.path
    if path == "/metrics" or path.startswith(CONTROL_PREFIXES):
        raise RouteNotFound("no such route; Warden serves the OpenAI API under /v1")
    return await handler(request)
