"""The application factory: composes state, routes, one middleware, and a cleanup context per resource."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from detectors.runtime.client import ScannerClient
from detectors.runtime.supervisor import ScannerSupervisor
from proxy.cache.service import ResponseCache, add_cache_header
from proxy.codeploy.wiring import managed_ctx, traffic_ctx
from proxy.driftwatch.wiring import drift_ctx
from proxy.errors import (
    InvalidRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    RequestTimeout,
    RouteNotFound,
    WardenError,
)
from proxy.governance.admin import add_admin_routes
from proxy.governance.service import governance_ctx
from proxy.headers import REQUEST_ID, valid_request_id
from proxy.metrics import ProxyMetrics
from proxy.policy.audit_sink import detections_sink
from proxy.policy.build import build_policy
from proxy.policy.metrics import PolicyMetrics
from proxy.relay import CLIENT_CLOSED, Exchange
from proxy.review.wiring import review_context
from proxy.routes import add_routes
from proxy.settings import WardenSettings
from proxy.state import EXCHANGE, PRINCIPAL, STATE, ProxyState
from proxy.tasks import TaskOwner
from proxy.telemetry import TelemetryWriter
from proxy.telemetry.events import health_listener, request_row
from proxy.upstream import HealthProber, UpstreamPool
from proxy.upstream.http1 import Http1Client

log = logging.getLogger("warden.app")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error_response(error: WardenError, request_id: str) -> web.Response:
    response = web.json_response(error.body(), status=error.status, headers={**error.headers, REQUEST_ID: request_id})
    if isinstance(error, RequestTimeout):
        response.force_close()  # the body was never read to its end; the connection is unusable
    return response


def _from_http_exception(exc: web.HTTPException) -> WardenError:
    if exc.status == 404:
        return RouteNotFound("no such route; Warden serves the OpenAI API under /v1")
    if exc.status == 405:
        return MethodNotAllowed(f"method not allowed here; allowed: {exc.headers.get('Allow', '')}".rstrip(": "))
    if exc.status == 413:
        return PayloadTooLarge("request body is over the size limit")
    error = WardenError(exc.text or exc.reason)
    error.status = exc.status
    error.type = "invalid_request_error" if exc.status < 500 else "server_error"
    return error


@web.middleware
async def exchange_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, error mapping and metrics for every route, in one place."""
    state = request.app[STATE]
    incoming = request.headers.get(REQUEST_ID)
    good_id = incoming is None or valid_request_id(incoming)
    exchange = Exchange(request_id=incoming if incoming and good_id else state.request_ids(), started=time.monotonic())
    request[EXCHANGE] = exchange
    state.metrics.in_flight += 1
    status = 500
    try:
        try:
            if not good_id:
                raise InvalidRequest(
                    "X-Request-Id must be 1-128 characters of letters, digits and . _ : -", param=REQUEST_ID,
                    code="invalid_request_id",
                )
            if state.governance is not None and request.path.startswith("/v1/"):
                principal = state.governance.authenticate(request)
                request[PRINCIPAL] = principal
                exchange.tenant, exchange.api_key_id = principal.tenant, principal.key_id
            response = await handler(request)
        except WardenError as error:
            response = _error_response(error, exchange.request_id)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _error_response(_from_http_exception(exc), exchange.request_id)
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        except Exception:
            if exchange.sent:
                raise
            log.exception("internal error on request %s", exchange.request_id)
            internal = WardenError("internal error in the proxy; see its log for request id " + exchange.request_id)
            response = _error_response(internal, exchange.request_id)
        status = exchange.status if exchange.sent and exchange.status else response.status
        return response
    finally:
        state.metrics.in_flight -= 1
        end = time.monotonic()
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        ttfb = exchange.first_byte - exchange.started if exchange.first_byte is not None else None
        total = end - exchange.started
        state.metrics.observe_request(route, exchange.model, exchange.tenant, status, total, ttfb,
                                      exchange.upstream_time)
        state.metrics.observe_generation(exchange)
        if state.telemetry is not None:
            state.telemetry.emit("requests", request_row(exchange, route, status, total, ttfb, request.headers))


def _client_session_ctx(state: ProxyState) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        # No auto headers and no decompression: the client's headers and the upstream's bytes
        # pass through as they are.
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30, enable_cleanup_closed=True)
        session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )
        timeouts = state.settings.timeouts
        client = Http1Client(timeouts.connect_s, timeouts.read_s)
        state.attach(session, client)
        try:
            yield
        finally:
            state.attach(None, None)
            await client.close()
            await session.close()

    return ctx


def _health_ctx(state: ProxyState) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        prober = HealthProber(state.pool, state.session)
        await prober.start()
        try:
            yield
        finally:
            await prober.stop()

    return ctx


def _scanner_ctx(state: ProxyState) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = state.settings.scanner
        if settings.mode == "off" or (settings.mode == "managed" and not settings.models):
            reason = "scanner.mode is off" if settings.mode == "off" else "no scanner.models configured"
            log.warning("scanner not started (%s): no detector will run", reason)
            yield
            return
        supervisor = ScannerSupervisor(settings) if settings.mode == "managed" else None
        if supervisor is not None:
            await supervisor.start()  # returns once models are loaded and warmed up
        state.scanner = ScannerClient(settings.address, settings.call_timeout_s)
        try:
            yield
        finally:
            await state.scanner.close()
            state.scanner = None
            if supervisor is not None:
                await supervisor.stop()

    return ctx


def _telemetry_ctx(state: ProxyState) -> Callable[[web.Application], AsyncIterator[None]]:
    """The writer lives as long as the app; with the embedded store (chDB) only one process may run."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if not state.settings.telemetry.enabled:
            yield
            return
        writer = TelemetryWriter(state.settings.telemetry, state.registry)
        await writer.start()
        state.telemetry = writer
        listener = health_listener(writer.emit)
        for backend in state.pool.backends():
            backend.listener = listener
        try:
            yield
        finally:
            for backend in state.pool.backends():
                backend.listener = None
            state.telemetry = None
            await writer.stop()

    return ctx


def _policy_ctx(state: ProxyState) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if not state.settings.detectors:
            log.warning("no detectors configured: requests and responses pass unscanned")
            yield
            return
        background = TaskOwner("policy")
        state.policy = await build_policy(state.settings.detectors, state.settings.policy, state.scanner,
                                          PolicyMetrics(state.registry), background)
        if state.telemetry is not None:
            versions = {e.detector.name: e.detector.version for e in state.policy.chain.entries}
            state.policy.sinks.append(detections_sink(state.telemetry.emit, versions))
        try:
            yield
        finally:
            state.policy = None
            await background.close(state.settings.server.shutdown_grace_s)

    return ctx


def _cache_ctx(state: ProxyState) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        background = TaskOwner("cache")  # stores answers after their exchange ended
        emit = state.telemetry.emit if state.telemetry is not None else None
        state.cache = ResponseCache(state.settings.cache, state.registry, background, emit)
        try:
            yield
        finally:
            cache, state.cache = state.cache, None
            await background.close(state.settings.server.shutdown_grace_s)
            await cache.close()

    return ctx


def create_app(settings: WardenSettings, registry: CollectorRegistry | None = None,
               config_path: Path | None = None) -> web.Application:
    registry = registry if registry is not None else CollectorRegistry()
    pool = UpstreamPool.from_settings(settings.upstreams)
    state = ProxyState(settings=settings, pool=pool, registry=registry, metrics=ProxyMetrics(registry, pool),
                       config_path=config_path)
    app = web.Application(middlewares=[exchange_middleware], client_max_size=settings.limits.max_body_bytes)
    app[STATE] = state
    app.cleanup_ctx.append(_telemetry_ctx(state))  # first in, last out: it records until the very end
    app.cleanup_ctx.append(governance_ctx(state))
    app.cleanup_ctx.append(managed_ctx(state))  # model servers Warden runs: up before the prober, down last
    app.cleanup_ctx.append(_client_session_ctx(state))
    app.cleanup_ctx.append(_health_ctx(state))
    app.cleanup_ctx.append(_scanner_ctx(state))
    app.cleanup_ctx.append(_policy_ctx(state))
    app.cleanup_ctx.append(review_context(state))  # the review queue's store and sampler, when enabled
    app.cleanup_ctx.append(drift_ctx(state))  # embeddings and drift statistics off the loop, when enabled
    if settings.cache.enabled:
        app.cleanup_ctx.append(_cache_ctx(state))
        app.on_response_prepare.append(add_cache_header)
    app.cleanup_ctx.append(traffic_ctx(state))  # load signals, canary smoke tests and rollback, once policy is up
    add_routes(app)
    add_admin_routes(app)
    return app
