"""One middleware for every route: the request's id and record, authentication, error mapping, metrics.

Errors of every kind become OpenAI-style JSON here (proxy/errors.py), so a handler raises a typed
error and never builds an error body itself; the request's telemetry row is emitted here, once,
whatever happened.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from proxy.errors import (
    InvalidRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    RequestTimeout,
    RouteNotFound,
    WardenError,
)
from proxy.exchange import CLIENT_CLOSED, Exchange
from proxy.headers import REQUEST_ID, valid_request_id
from proxy.state import EXCHANGE, PRINCIPAL, STATE
from proxy.telemetry.events import request_row
from proxy.tracing.logs import CURRENT
from proxy.wire.texts import APIS

log = logging.getLogger("warden.app")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error_response(error: WardenError, request_id: str, path: str = "") -> web.Response:
    api = APIS.get(path)
    body = error.body(api.error_shape if api is not None else "openai")
    response = web.json_response(body, status=error.status, headers={**error.headers, REQUEST_ID: request_id})
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
    # Warden's id, always: a client's X-Request-Id could be another tenant's; it is kept in telemetry
    # as client_request_id (proxy/telemetry/events.py), never used as the request's identity.
    exchange = Exchange(request_id=state.request_ids(), started=time.monotonic())
    request[EXCHANGE] = exchange
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    if state.tracing is not None:
        exchange.trace = state.tracing.start(request.method, route, request.path, request.headers)
    current = CURRENT.set(exchange)  # log lines of this request carry its id (proxy/tracing/logs.py)
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
            response = _error_response(error, exchange.request_id, request.path)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _error_response(_from_http_exception(exc), exchange.request_id, request.path)
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        except Exception:
            if exchange.sent:
                raise
            log.exception("internal error on request %s", exchange.request_id)
            internal = WardenError("internal error in the proxy; see its log for request id " + exchange.request_id)
            response = _error_response(internal, exchange.request_id, request.path)
        status = exchange.status if exchange.sent and exchange.status else response.status
        return response
    finally:
        state.metrics.in_flight -= 1
        end = time.monotonic()
        ttfb = exchange.first_byte - exchange.started if exchange.first_byte is not None else None
        total = end - exchange.started
        trace = exchange.trace
        if trace is not None:
            trace.finish(exchange, status)
        state.metrics.observe_request(route, exchange.model, exchange.tenant, status, total, ttfb,
                                      exchange.upstream_time, trace.trace_id if trace is not None else None)
        state.metrics.observe_generation(exchange)
        if state.telemetry is not None:
            state.telemetry.emit("requests", request_row(exchange, route, status, total, ttfb, request.headers))
        CURRENT.reset(current)
