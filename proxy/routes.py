"""HTTP routes: the OpenAI API surface, health, readiness and metrics.

Handlers validate only what the proxy itself needs (a JSON object, `model`, `stream`, the
prompt for affinity); everything else is the model server's business and passes through.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import aiohttp
from aiohttp import web

from detectors.runtime.client import ScannerError
from proxy.errors import (
    ContentBlocked,
    InvalidRequest,
    ModelNotFound,
    PayloadTooLarge,
    RequestTimeout,
    Unavailable,
)
from proxy.exchange import Exchange
from proxy.governance.shared import WORKER
from proxy.metrics import exposition
from proxy.openapi import openapi_spec
from proxy.policy.engine import Scope
from proxy.policy.service import settle
from proxy.state import EXCHANGE, PRINCIPAL, STATE, ProxyState
from proxy.telemetry.events import MAX_LABEL, PROMPT_TEMPLATE_ID, PROMPT_TEMPLATE_VERSION
from proxy.upstream import Group
from proxy.wire.body import body_object, parse_object
from proxy.wire.texts import APIS, system_prompt

log = logging.getLogger("warden.routes")
# The scanned routes: every one is read through the declared text map of its API (proxy/wire/texts.py).
OPENAI_POST_ROUTES = tuple(APIS)


async def read_body(request: web.Request, state: ProxyState) -> bytes:
    limit = state.settings.limits.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body of {request.content_length} bytes is over the {limit}-byte limit")
    try:
        if request.content.is_eof():  # the usual case: the body came with the headers; no timer needed
            return await request.read()
        async with asyncio.timeout(state.settings.timeouts.body_read_s):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"request body is over the {limit}-byte limit") from None
    except TimeoutError:
        raise RequestTimeout(
            f"request body not received within {state.settings.timeouts.body_read_s:g}s",
        ) from None


def _require_type(payload: dict[str, Any], name: str, ok: Callable[[Any], bool], what: str) -> None:
    if name in payload and not ok(payload[name]):
        raise InvalidRequest(f"'{name}' must be {what}", param=name, code="invalid_type")


def validate_openai(payload: dict[str, Any]) -> str:
    model = payload.get("model")
    if model is None:
        raise InvalidRequest("'model' is required", param="model", code="missing_model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("'model' must be a non-empty string", param="model", code="invalid_type")
    _require_type(payload, "stream", lambda v: v is None or isinstance(v, bool), "a boolean")
    _require_type(payload, "messages", lambda v: isinstance(v, list), "an array of messages")
    _require_type(payload, "prompt", lambda v: isinstance(v, (str, list)), "a string or an array")
    return model


def affinity_key(group: Group, request: web.Request, payload: dict[str, Any]) -> str | None:
    """The session header if sent, else the prompt's first characters: what a KV cache can reuse."""
    if group.settings.balancer != "prefix_affinity":
        return None
    settings = group.settings.affinity
    session = request.headers.get(settings.session_header)
    if session:
        return "s:" + session
    prompt = payload.get("prompt")
    if prompt is None:
        messages = payload.get("messages") or []
        prompt = "".join(
            m["content"] for m in messages if isinstance(m, dict) and isinstance(m.get("content"), str)
        )
    if isinstance(prompt, list):
        prompt = "".join(p for p in prompt if isinstance(p, str))
    return "p:" + prompt[: settings.prefix_chars] if prompt else None


async def openai_route(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = await read_body(request, state)
    payload = parse_object(body)
    model = validate_openai(payload)
    exchange = request[EXCHANGE]
    exchange.model = model
    headers = request.headers
    if PROMPT_TEMPLATE_ID in headers:
        exchange.template_id = headers[PROMPT_TEMPLATE_ID][:MAX_LABEL]
        exchange.template_version = headers.get(PROMPT_TEMPLATE_VERSION, "")[:MAX_LABEL]
    gate = state.governance
    if gate is None:
        return await _scan_and_forward(request, state, exchange, body, payload, model, state.pool.group_for(model))
    principal = request[PRINCIPAL]
    group = gate.group_for(principal, model, state.pool)
    admission = await gate.admit(principal, exchange, model, payload)
    try:
        return await _scan_and_forward(request, state, exchange, body, payload, model, group)
    finally:
        admission.finish(exchange)


async def _scan_and_forward(request: web.Request, state: ProxyState, exchange: Exchange, body: bytes,
                            payload: dict[str, Any], model: str, group: Group | None) -> web.StreamResponse:
    if group is None:
        raise ModelNotFound(f"the model '{model}' does not exist or is not served here", param="model")
    group = group.pick_version()  # a canary's share of the traffic (proxy/codeploy/rollout.py)
    resource = request.match_info.route.resource
    api = APIS[resource.canonical if resource is not None else request.path]
    exchange.route = api.route
    if state.observers and api.answers_text:
        # Before the request scan, so a blocked request is observed too (review samples blocks);
        # observers read the payload when the exchange ends, after redaction in place.
        for observe in state.observers:
            tap = observe(exchange, payload)
            if tap is not None:
                exchange.taps.append(tap)
    transform = None
    beside: list[asyncio.Task[None]] = []  # flag-only request scans, run beside the upstream call
    if state.policy is not None:
        scope = Scope(tenant=exchange.tenant, route=request.path, model=model, request_id=exchange.request_id,
                      summary=exchange.verdict)
        try:
            if await state.policy.check_request(payload, scope, exchange.trace, beside):
                body = json.dumps(payload).encode()  # redacted before it leaves
        except BaseException:  # blocked (or failed): no answer will come, but the observers hear the end
            for tap in exchange.taps:
                tap.end(False)
            raise
        if api.answers_text:
            transform = state.policy.response_transform(scope, system_prompt(payload), api.name, exchange.trace,
                                                        beside)
    key = affinity_key(group, request, payload)
    try:
        if state.cache is not None:  # after request policy, always: the key is the body as it is sent upstream
            return await state.cache.handle(request, exchange, group, payload, state.relay, body, key, transform)
        return await state.relay.forward(request, exchange, group, body, key, transform)
    finally:
        await settle(beside)  # their verdicts are in the exchange's record before it is written


def check_path(raw_path: str) -> None:
    """The raw path goes upstream as sent: nothing in it may read differently there than here.

    A dot segment or encoded slash would let it leave /v1; an empty segment, `;params` or a control
    character is something servers disagree on (one strips it, another keeps it), and no /v1 route has one.
    """
    path = raw_path.partition("?")[0]
    lowered = path.lower()
    decoded = unquote(path)
    if ("%2f" in lowered or "%5c" in lowered or "\\" in path or {".", ".."} & set(decoded.split("/"))
            or "//" in decoded or ";" in decoded or not decoded.isprintable()):
        raise InvalidRequest("the path may not hold dot segments, empty segments, encoded slashes, ';' or "
                             "control characters", code="invalid_path")


def model_in_path(path: str) -> str | None:
    """GET /v1/models/{id} names a model in its path: judged like one in a body."""
    prefix = "/v1/models/"
    return path[len(prefix):] or None if path.startswith(prefix) else None


async def passthrough_route(request: web.Request) -> web.StreamResponse:
    """Other /v1 routes, relayed unscanned; every tenant rule applies to them, whatever the body's type."""
    check_path(request.raw_path)
    state = request.app[STATE]
    body = await read_body(request, state)
    gate = state.governance
    try:
        payload = body_object(body)
    except InvalidRequest:
        if gate is not None:
            raise
        payload = None  # no tenant rules to judge: the body only routes, and this one cannot
    model = payload.get("model") if payload is not None else model_in_path(request.path)
    if model is not None and not isinstance(model, str):
        if gate is not None:
            raise InvalidRequest("'model' must be a string", param="model", code="invalid_type")
        model = None
    exchange = request[EXCHANGE]
    exchange.model = model
    if state.policy is not None:  # the detectors read only the OpenAI routes above
        if state.policy.enforce and state.policy.settings.other_routes == "block":
            raise ContentBlocked(f"{request.path} cannot be scanned, and policy.other_routes is block",
                                 code="unscanned_route")
        state.policy.metrics.unscanned.labels("route").inc()
    if gate is None:
        group = (state.pool.group_for(model) if model is not None else None) or state.pool.default_group
        return await state.relay.forward(request, exchange, group, body, None)
    principal = request[PRINCIPAL]
    if model is None and body.strip():
        gate.check_unnamed(principal, readable=payload is not None)
    admission = await gate.admit(principal, exchange, model, payload)
    try:
        chosen = (gate.group_for(principal, model, state.pool) if model is not None else None) \
            or gate.group_for(principal, None, state.pool)
        if chosen is None:
            raise Unavailable("no upstream group is open to this key's tenant (every group is pinned to another)")
        return await state.relay.forward(request, exchange, chosen, body, None)
    finally:
        admission.finish(exchange)


async def _models_of(state: ProxyState, url: str) -> list[dict[str, Any]]:
    timeout = aiohttp.ClientTimeout(total=state.settings.timeouts.connect_s + 5)
    try:
        async with state.session.get(url + "/v1/models", timeout=timeout) as resp:
            if resp.status != 200:
                return []
            data = (await resp.json(content_type=None)).get("data")
    except (aiohttp.ClientError, TimeoutError, ValueError, AttributeError, RecursionError):
        return []
    return [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)] if isinstance(data, list) else []


async def models_route(request: web.Request) -> web.Response:
    """Models from every available backend, kept only where they route back to that backend's group."""
    state = request.app[STATE]
    jobs = [(g, b) for g in state.pool.groups for b in g.backends if b.available]
    listings = await asyncio.gather(*(_models_of(state, b.url) for _, b in jobs))
    merged: dict[str, dict[str, Any]] = {}
    for (group, _), models in zip(jobs, listings, strict=True):
        for model in models:
            if state.pool.group_for(model["id"]) is group:
                merged.setdefault(model["id"], model)
    for group in state.pool.groups:
        for name in group.literal_models:
            merged.setdefault(name, {"id": name, "object": "model", "created": 0, "owned_by": group.name})
    if not merged and not any(listings):
        raise Unavailable("no upstream answered /v1/models")
    models = list(merged.values())
    if state.governance is not None:  # a tenant sees only the models it may use
        models = [m for m in models if state.governance.may_use(request[PRINCIPAL], m["id"])]
    return web.json_response({"object": "list", "data": models})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when an upstream group can serve (`readiness.require: any`, or every one with `all`; a canary
    is optional) and, under the supervisor, every worker, the scanner and the telemetry process are up."""
    state = request.app[STATE]
    groups = {g.name: g.healthy_count for g in state.pool.groups}
    serving = [g.healthy_count > 0 for g in state.pool.groups if g.canary_of is None]
    ready = any(serving) if state.settings.readiness.require == "any" else all(serving)
    body: dict[str, Any] = {"status": "", "healthy_backends": groups}
    role = request.app.get(WORKER)
    if role is not None:
        try:
            body["processes"] = processes = await role.hub.status()
            ready = ready and bool(processes.pop("ready"))
        except (ConnectionError, TimeoutError, RuntimeError) as exc:
            body["processes"] = {"error": f"the supervisor does not answer: {exc}"}
            ready = False
    body["status"] = "ready" if ready else "not ready"
    if state.managed is not None:
        body["managed"] = state.managed.describe()
    if state.rollouts is not None and state.rollouts.rollouts:
        body["canaries"] = state.rollouts.describe()
    return web.json_response(body, status=200 if ready else 503)


async def metrics_route(request: web.Request) -> web.Response:
    """The proxy's metrics, followed by the scanner's (fetched over its socket), in one scrape."""
    state = request.app[STATE]
    scanner = ""
    if state.scanner is not None:
        try:
            scanner = await state.scanner.metrics_text(timeout_s=1.0)
        except ScannerError as exc:
            log.warning("scanner metrics left out of this scrape: %s", exc)
    data, content_type = exposition(state.registry, scanner, request.headers.get("Accept", ""))
    return web.Response(body=data, headers={"Content-Type": content_type})


async def openapi_route(request: web.Request) -> web.Response:
    return web.json_response(openapi_spec())


def add_routes(app: web.Application) -> None:
    for path in OPENAI_POST_ROUTES:
        app.router.add_post(path, openai_route)
    app.router.add_get("/v1/models", models_route)
    app.router.add_route("*", "/v1/{tail:.*}", passthrough_route)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_route)
    app.router.add_get("/openapi.json", openapi_route)
