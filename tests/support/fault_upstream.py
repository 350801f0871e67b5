"""An OpenAI-shaped upstream run as its own process, misbehaving on demand, for fault injection.

The reliability suite and the soak need an upstream they can SIGKILL, whose sockets die with it
the way a crashed model server's do; the in-process FakeUpstream cannot show that. What it does
is chosen per request by the `model` name, so one process serves every fault:

- anything else: a normal answer (JSON, or SSE when `stream` is true; `n` chunks, `gap_ms` apart)
- `hang`: never answers; `hang-mid`: two chunks of a stream, then silence
- `garbage`: a stream of malformed events; `truncated`: a stream cut inside an event
- `endless`: an SSE body that never ends an event; `flood`: valid events without end
- `deep`: a JSON answer nested 100,000 levels; `big`: a JSON answer of `size` bytes, chunked

    python -m tests.support.fault_upstream --port 9001
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from aiohttp import web

TEXT = "The quick brown fox jumps over the lazy dog. "


def chunk(model: str, content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    event = {"id": "cmpl-f", "object": "chat.completion.chunk", "created": 0, "model": model,
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def whole(model: str, content: str) -> dict[str, Any]:
    return {"id": "cmpl-f", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}}


GARBAGE = [b"data: not json at all\n\n", b'data: {"choices": "nope"}\n\n', b'data: {"choices": ["x", 3]}\n\n',
           b'data: {"choices": [{"index": "abc", "delta": {"content": "a"}}]}\n\n',
           b'data: {"choices": [{"index": 0, "delta": "str"}]}\n\n', b"data: [1, 2]\n\n",
           b'data: {"choices": [{"index": 0, "delta": {"content": 5}}]}\n\n', b"\xff\xfe\x00garbage\n\n",
           b"event: x\nid: 1\n\n", b'data: {"choices": [{"index": -1, "text": "legacy"}]}\n\n',
           b"data: " + b"[" * 5000 + b"\n\n", b": comment only\n\n"]


async def stream(request: web.Request, model: str, payload: dict[str, Any]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    n, gap = int(payload.get("n", 8)), float(payload.get("gap_ms", 0)) / 1000
    content = str(payload.get("reply", TEXT))
    if model == "garbage":
        for event in GARBAGE:
            await response.write(event)
    elif model == "truncated":
        await response.write(chunk(model, "half "))
        await response.write(b'data: {"choices": [{"index": 0, "delta": {"cont')
        return response  # ends with the chunked terminator: a clean close in the middle of an event
    elif model == "endless":
        await response.write(b"data: ")
        while True:
            await response.write(b"x" * 65536)
    elif model == "flood":
        while True:
            await response.write(chunk(model, content))
    for i in range(n):
        if model == "hang-mid" and i == 2:
            await asyncio.sleep(3600)
        await response.write(chunk(model, content))
        if gap:
            await asyncio.sleep(gap)
    await response.write(chunk(model, None, "stop") + b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def chat(request: web.Request) -> web.StreamResponse:
    payload = await request.json()
    model = str(payload.get("model", ""))
    if model == "hang":
        await asyncio.sleep(3600)
    if payload.get("stream"):
        return await stream(request, model, payload)
    if model == "deep":
        return web.Response(body=b"[" * 100_000 + b"]" * 100_000, content_type="application/json")
    if model == "big":
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        size, sent = int(payload.get("size", 1 << 20)), 0
        await response.write(b'{"choices": [{"index": 0, "message": {"content": "')
        while sent < size:
            await response.write(b"y" * 65536)
            sent += 65536
        await response.write(b'"}}]}')
        await response.write_eof()
        return response
    return web.json_response(whole(model, str(payload.get("reply", TEXT))))


async def embeddings(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}]})


async def models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "fault-model", "object": "model", "created": 0,
                                                          "owned_by": "fault"}]})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", models)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(make_app(), host="127.0.0.1", port=args.port, print=lambda _: print("ready", flush=True),
                access_log=None, handle_signals=True)


if __name__ == "__main__":
    main()
