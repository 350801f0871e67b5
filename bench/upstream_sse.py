"""A tiny OpenAI-shaped upstream that streams SSE chat chunks (for the time-to-first-byte test).

nginx cannot stream a chunked SSE body with gaps between events, so the streaming upstream is
this aiohttp server. The first event goes out at once (its time is what TTFB measures); the
rest follow with short gaps so a proxy that buffers instead of relaying shows up as slow.
Non-streaming requests get the same fixed JSON as the nginx upstream, and GET /v1/models
answers health probes.

    python -m bench.upstream_sse --port 9001 [--chunks 8] [--gap-ms 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiohttp import web

from bench.harness import FIXED_RESPONSE, MODEL, MODELS_RESPONSE


def _chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
    event = {
        "id": "chatcmpl-bench0001", "object": "chat.completion.chunk", "created": 1700000000, "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def make_app(chunks: int, gap_s: float) -> web.Application:
    words = ["Hello", "!", " How", " can", " I", " help", " you", " today", "?"]

    async def models(request: web.Request) -> web.Response:
        return web.Response(text=MODELS_RESPONSE, content_type="application/json")

    async def chat(request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        if not payload.get("stream"):
            return web.Response(text=FIXED_RESPONSE, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        await response.write(_chunk({"role": "assistant", "content": ""}))
        for i in range(chunks):
            await asyncio.sleep(gap_s)
            await response.write(_chunk({"content": words[i % len(words)]}))
        await response.write(_chunk({}, finish="stop"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--gap-ms", type=float, default=1.0)
    args = parser.parse_args()
    import uvloop

    uvloop.install()
    web.run_app(make_app(args.chunks, args.gap_ms / 1000), host="127.0.0.1", port=args.port,
                access_log=None, print=None)


if __name__ == "__main__":
    main()
