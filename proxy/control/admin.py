"""The admin API under /admin: keys (create, rotate, revoke), abuse restrictions, config reload.

Every call needs an admin bearer token (its SHA-256 in `governance.admin_token_sha256`, or the
token itself in the env var named by `governance.admin_token_env`); without one configured the
API answers 403 to everyone. Key changes are written to the keys file and take effect before
the call returns; every change is audited.
"""

from __future__ import annotations

import asyncio
import hmac
import os
from typing import Any

from aiohttp import web

from proxy.control.reload import reload_config
from proxy.errors import (
    AuthenticationFailed,
    InvalidRequest,
    PermissionDenied,
    RouteNotFound,
    Unavailable,
    WardenError,
)
from proxy.governance.gate import Governance
from proxy.governance.keys import KeysFile, digest
from proxy.governance.settings import valid_name
from proxy.state import STATE, ProxyState
from proxy.telemetry.commands import QueryRefused, format_json, format_table, read_query
from proxy.telemetry.remote import RemoteWriter
from proxy.telemetry.spend import parse_since, spend_sql
from proxy.telemetry.store import database_for
from proxy.wire.body import parse_object


class Conflict(WardenError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


def _admin(request: web.Request) -> ProxyState:
    state = request.app[STATE]
    settings = state.settings.governance
    hashes = list(settings.admin_token_sha256)
    env_token = os.environ.get(settings.admin_token_env, "")
    if env_token:
        hashes.append(digest(env_token))
    if not hashes:
        raise PermissionDenied("the admin API is off: configure governance.admin_token_sha256 or "
                               "the WARDEN_ADMIN_TOKEN env var", code="admin_disabled")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    presented = digest(token.strip()) if scheme.lower() == "bearer" and token.strip() else ""
    # Every configured hash is compared, whether or not an earlier one matched.
    matched = [hmac.compare_digest(presented, h) for h in hashes]
    if not presented or not any(matched):
        raise AuthenticationFailed("admin token missing or wrong", code="invalid_admin_token")
    return state


def _keys_file(state: ProxyState) -> KeysFile:
    gate = _gate(state)
    if gate.watcher is None:
        raise Conflict("no governance.keys_file is configured: keys in the config file change by editing it")
    return gate.watcher.file


def _actor(request: web.Request) -> str:
    return "admin@" + (request.remote or "-")


def _gate(state: ProxyState) -> Governance:
    if state.governance is None:
        raise Conflict("governance is off (no governance section): restart with one to manage keys and limits")
    return state.governance


async def list_keys(request: web.Request) -> web.Response:
    gate = _gate(_admin(request))
    return web.json_response({"data": [k.public() for k in gate.all_keys()]})


async def create_key(request: web.Request) -> web.Response:
    state = _admin(request)
    payload = parse_object(await request.read())
    tenant, name = payload.get("tenant"), payload.get("name", "")
    if not isinstance(tenant, str) or not isinstance(name, str):
        raise InvalidRequest("'tenant' (a string) is required; 'name' is an optional string", param="tenant")
    if not valid_name(tenant):
        raise InvalidRequest("bad tenant name: 1-64 characters of letters, digits and . _ -", param="tenant")
    file = _keys_file(state)
    key, entry = await asyncio.to_thread(file.create, tenant, name)
    await _adopt(state, _actor(request))
    return web.json_response({**entry.public(), "key": key}, status=201)


async def rotate_key(request: web.Request) -> web.Response:
    state = _admin(request)
    key_id = request.match_info["key_id"]
    file = _keys_file(state)
    try:
        key, entry = await asyncio.to_thread(file.rotate, key_id)
    except KeyError:
        raise _no_key(state, key_id) from None
    await _adopt(state, _actor(request))
    return web.json_response({**entry.public(), "key": key})


async def revoke_key(request: web.Request) -> web.Response:
    state = _admin(request)
    key_id = request.match_info["key_id"]
    file = _keys_file(state)
    try:
        entry = await asyncio.to_thread(file.revoke, key_id)
    except KeyError:
        raise _no_key(state, key_id) from None
    await _adopt(state, _actor(request))
    return web.json_response(entry.public())


def _no_key(state: ProxyState, key_id: str) -> WardenError:
    assert state.governance is not None
    if any(k.id == key_id and k.source == "config" for k in state.governance.all_keys()):
        return Conflict(f"key '{key_id}' is defined in the config file; change it there and reload")
    return RouteNotFound(f"no active key '{key_id}' in the keys file")


async def _adopt(state: ProxyState, actor: str) -> None:
    gate = state.governance
    assert gate is not None and gate.watcher is not None
    watcher = gate.watcher
    keys, mtime = await asyncio.to_thread(lambda: (watcher.file.load(), watcher.file.mtime()))
    watcher.adopt(keys, mtime, actor)


async def list_restrictions(request: web.Request) -> web.Response:
    gate = _gate(_admin(request))
    now = gate.clock()
    data: list[dict[str, Any]] = [
        {"subject": r.subject, "tenant": r.tenant, "kind": r.kind, "reason": r.reason,
         "expires_in_s": round(r.until - now, 1)}
        for r in list(gate.abuse.restrictions.values()) if r.until > now
    ]
    return web.json_response({"data": data})


async def lift_restriction(request: web.Request) -> web.Response:
    lifted = _gate(_admin(request)).abuse.lift(request.match_info["subject"])
    if lifted is None:
        raise RouteNotFound("no throttle or suspension on that subject")
    return web.json_response({"subject": lifted.subject, "lifted": lifted.kind})


async def reload(request: web.Request) -> web.Response:
    state = _admin(request)
    result = await reload_config(state, _actor(request))
    return web.json_response(result.body(), status=200 if result.ok else 400)


async def query(request: web.Request) -> web.Response:
    """`GET /admin/query?sql=...&format=json|table`: what `warden query` prints, read-only, for tools.

    Under the supervisor the telemetry process answers (it owns the store); a single Warden
    answers on its own writer's store.
    """
    state = _admin(request)
    sql, fmt = request.query.get("sql", ""), request.query.get("format", "json")
    if not sql.strip():
        raise InvalidRequest("'sql' is required: GET /admin/query?sql=SELECT...", param="sql")
    if fmt not in ("json", "table"):
        raise InvalidRequest("'format' is json or table", param="format")
    writer = state.telemetry
    if writer is None:
        raise Conflict("telemetry is off (telemetry.enabled: false): there is nothing to query")
    try:
        if isinstance(writer, RemoteWriter):
            text = await writer.query_text(sql, fmt)
        else:
            rows = await read_query(writer.store, writer.settings, sql)
            text = format_json(rows) if fmt == "json" else format_table(rows)
    except QueryRefused as exc:
        raise InvalidRequest(str(exc), param="sql", code="query_refused") from None
    except (ConnectionError, TimeoutError) as exc:
        raise Unavailable(f"the telemetry store is not reachable now: {exc}", code="telemetry_unavailable") from None
    except Exception as exc:  # the engine's own error (a typo, an unknown column): the caller's to fix
        raise InvalidRequest(f"{type(exc).__name__}: {str(exc)[:1000]}", param="sql", code="query_failed") from None
    return web.Response(text=text, content_type="application/json" if fmt == "json" else "text/plain")


async def spend(request: web.Request) -> web.Response:
    """`GET /admin/spend?by=tenant|key|user|model&since=7d`: what `warden spend` prints, as JSON rows.

    Under the supervisor the telemetry process answers (it owns the store); a single Warden reads its
    own writer's store, naming the table with its database (the writer's handle has no default one).
    """
    state = _admin(request)
    try:
        by, since_s = request.query.get("by", "tenant"), parse_since(request.query.get("since", "7d"))
        sql = spend_sql(by, since_s)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param=str(exc).split(":", 1)[0]) from None
    writer = state.telemetry
    if writer is None:
        raise Conflict("telemetry is off (telemetry.enabled: false): spend is read from the requests rows")
    try:
        remote = getattr(writer, "query_text", None)
        store = getattr(writer, "store", None)
        if remote is not None:
            text = str(await remote(sql, "json"))
        elif store is not None:
            database = database_for(writer.settings.dsn, writer.settings.database)
            text = format_json(await store.query(spend_sql(by, since_s, f"`{database}`.requests")))
        else:
            raise ConnectionError("the telemetry store is not open yet")
    except (ConnectionError, TimeoutError) as exc:
        raise Unavailable(f"the telemetry store is not reachable now: {exc}", code="telemetry_unavailable") from None
    return web.Response(text=text, content_type="application/json")


def add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/admin/query", query)
    app.router.add_get("/admin/spend", spend)
    app.router.add_get("/admin/keys", list_keys)
    app.router.add_post("/admin/keys", create_key)
    app.router.add_post("/admin/keys/{key_id}/rotate", rotate_key)
    app.router.add_delete("/admin/keys/{key_id}", revoke_key)
    app.router.add_get("/admin/abuse", list_restrictions)
    app.router.add_delete("/admin/abuse/{subject}", lift_restriction)
    app.router.add_post("/admin/reload", reload)
