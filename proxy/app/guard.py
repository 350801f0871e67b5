"""The canonical-route guard: a route Warden reads itself is served only as itself, for its own methods.

A middleware of the composition root, ahead of the routes: a variant path of a scanned route would
otherwise reach the /v1 catch-all and go upstream raw, where a model server could read it as the
route itself, unscanned (docs/api.md, "Canonical routes and methods").
"""

from __future__ import annotations

from urllib.parse import unquote

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from proxy.errors import InvalidRequest, MethodNotAllowed
from proxy.routes import OPENAI_POST_ROUTES


def guarded_routes() -> dict[str, frozenset[str]]:
    """The routes Warden reads itself (scans, or filters per tenant), each with the methods it answers.

    Read from OPENAI_POST_ROUTES when called, so a route added there is guarded with no other change.
    """
    methods = {route: frozenset({"POST"}) for route in OPENAI_POST_ROUTES}
    methods["/v1/models"] = frozenset({"GET", "HEAD"})
    return methods


def normal_path(target: str) -> str:
    """What some server might take a request target for: every reading any upstream could make, folded.

    Absolute form cut to its path; query and fragment dropped; percent-decoding repeated (a double
    encoding decoded by one hop and then by the next); `;params` cut from each segment; control,
    format and space characters dropped; empty and dot segments resolved; case folded.
    """
    path = target if target.startswith("/") else "/" + target.partition("//")[2].partition("/")[2]
    path = path.partition("?")[0].partition("#")[0]
    for _ in range(4):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    kept: list[str] = []
    for segment in path.split("/"):
        segment = "".join(c for c in segment.partition(";")[0] if c.isprintable() and not c.isspace())
        if segment == "..":
            if kept:
                kept.pop()
        elif segment not in ("", "."):
            kept.append(segment)
    return ("/" + "/".join(kept)).casefold()


def route_guard() -> Middleware:
    """A middleware: a guarded route is served only as itself, and only for its own methods.

    A variant (`/v1/chat/completions/`, `//`, `;x`, `%00`, `%63`, `/V1/...`) is refused with 400 rather
    than relayed raw by the /v1 catch-all, where the model server could read it as the route itself,
    unscanned; another method gets 405 for the same reason. Canonical targets cost one dict lookup.
    """
    methods = guarded_routes()
    canonical = {route.casefold(): route for route in methods}

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        target = request.raw_path
        allowed = methods.get(target.partition("?")[0])
        if allowed is None:
            route = canonical.get(normal_path(target))
            if route is not None:
                raise InvalidRequest(f"not a canonical route: send it as {route} (no trailing slash, empty or "
                                     f"dot segments, ';', percent-encoding or other case)", code="invalid_path")
        elif request.method not in allowed:
            allow = ", ".join(sorted(allowed))
            raise MethodNotAllowed(f"{request.method} is not allowed on {target.partition('?')[0]}; allowed: {allow}",
                                   headers={"Allow": allow})
        return await handler(request)

    return guard
