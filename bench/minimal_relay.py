"""The floor of Python's cost: the least an aiohttp reverse proxy can do per request.

Read the body, forward it with one shared ClientSession, return the body (or stream SSE).
No validation, header filtering, metrics or balancing: Warden's throughput is judged against
this, so whatever Warden costs beyond it is Warden's own code, not aiohttp's.

`--client lean` swaps aiohttp's ClientSession for Warden's own HTTP/1.1 client (the one its
relay uses): the same floor with the same client, so the gap to Warden is its features alone.

    python -m bench.minimal_relay --upstream http://127.0.0.1:9000 --port 9100 [--uvloop] [--client lean]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from proxy.upstream.http1 import Http1Client

SESSION = web.AppKey("session", aiohttp.ClientSession)
LEAN = web.AppKey("lean", Http1Client)
UPSTREAM = web.AppKey("upstream", str)


async def relay(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
    if "Authorization" in request.headers:
        headers["Authorization"] = request.headers["Authorization"]
    url = request.app[UPSTREAM] + request.path_qs
    async with request.app[SESSION].request(request.method, url, data=body, headers=headers) as up:
        content_type = up.headers.get("Content-Type", "application/json")
        if not content_type.startswith("text/event-stream"):
            return web.Response(status=up.status, body=await up.read(), headers={"Content-Type": content_type})
        response = web.StreamResponse(status=up.status, headers={"Content-Type": content_type})
        await response.prepare(request)
        async for chunk in up.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def relay_lean(request: web.Request) -> web.StreamResponse:
    """The same steps through Warden's client."""
    body = await request.read()
    headers = CIMultiDict({"Content-Type": request.headers.get("Content-Type", "application/json")})
    if "Authorization" in request.headers:
        headers["Authorization"] = request.headers["Authorization"]
    async with await request.app[LEAN].request(request.method, request.app[UPSTREAM], request.path_qs, headers,
                                               body) as up:
        content_type = up.headers.get("Content-Type", "application/json")
        if not content_type.startswith("text/event-stream"):
            return web.Response(status=up.status, body=await up.read(), headers={"Content-Type": content_type})
        response = web.StreamResponse(status=up.status, headers={"Content-Type": content_type})
        await response.prepare(request)
        async for chunk in up.chunks():
            await response.write(chunk)
        await response.write_eof()
        return response


async def serve(upstream: str, port: int, client: str) -> None:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            app[SESSION] = session
            yield

    async def lean_ctx(app: web.Application) -> AsyncIterator[None]:
        app[LEAN] = Http1Client(connect_timeout_s=5, read_timeout_s=60)
        yield
        await app[LEAN].close()

    app.cleanup_ctx.append(lean_ctx if client == "lean" else session_ctx)
    app.router.add_route("*", "/{tail:.*}", relay_lean if client == "lean" else relay)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    try:
        await asyncio.Event().wait()  # until SIGTERM (default action) or Ctrl-C
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop instead of asyncio's loop")
    parser.add_argument("--client", choices=("aiohttp", "lean"), default="aiohttp",
                        help="aiohttp's ClientSession (the floor the targets name) or Warden's HTTP/1.1 client")
    args = parser.parse_args()
    factory = None
    if args.uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args.upstream, args.port, args.client))


if __name__ == "__main__":
    main()
