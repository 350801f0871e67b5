"""A scripted OpenAI-compatible upstream for tests of proxy logic (failures on demand).

End-to-end behaviour is proven against real llama.cpp servers (tests/support/llama.py); this
fake exists for what a real server will not do when asked: answer 503, hang, cut a stream.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Script:
    """What the fake does next; tests flip these between requests."""

    status: int = 200
    hang_s: float = 0.0
    stream_chunks: int = 5
    chunk_delay_s: float = 0.0
    cut_stream_after: int | None = None
    content: str = "hello"
    pieces: list[str] | None = None  # stream exactly these deltas (and answer their join when not streaming)
    models: list[str] = field(default_factory=lambda: ["fake-model"])


class FakeUpstream:
    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.script = Script()
        self.requests: list[dict[str, Any]] = []
        self.cancelled = 0
        self.completed_streams = 0
        self.sent_pieces = 0
        self.server: TestServer | None = None
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self._chat)
        self.app.router.add_post("/v1/completions", self._chat)
        self.app.router.add_post("/v1/embeddings", self._embeddings)
        self.app.router.add_get("/v1/models", self._models)
        self.app.router.add_get("/health", self._health)
        self.app.router.add_route("*", "/v1/{tail:.*}", self._echo)

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    async def start(self, port: int | None = None, tls: ssl.SSLContext | None = None) -> Self:
        """Serves on 127.0.0.1; with `tls`, over https (the url says so)."""
        self.server = TestServer(self.app, host="127.0.0.1", port=port)
        await self.server.start_server(ssl=tls)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()

    def _record(self, request: web.Request, body: bytes) -> None:
        self.requests.append(
            {"path": request.path_qs, "method": request.method, "headers": dict(request.headers), "body": body}
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self._record(request, body)
        script = self.script
        try:
            if script.hang_s:
                await asyncio.sleep(script.hang_s)
            if script.status != 200:
                return web.json_response(
                    {"error": {"message": "scripted failure", "type": "server_error"}}, status=script.status
                )
            payload = json.loads(body)
            if payload.get("stream"):
                return await self._stream(request, payload)
            return web.json_response(
                {
                    "id": "cmpl-1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": payload.get("model"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "".join(script.pieces or [script.content])},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    "served_by": self.name,
                },
                headers={"X-Served-By": self.name},
            )
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def _stream(self, request: web.Request, payload: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Served-By": self.name})
        await response.prepare(request)
        script = self.script
        if script.pieces is not None:
            return await self._stream_pieces(request, response, payload, script.pieces)
        for i in range(script.stream_chunks):
            if script.cut_stream_after is not None and i == script.cut_stream_after:
                assert request.transport is not None
                request.transport.abort()
                return response
            chunk = {
                "id": "cmpl-1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": payload.get("model"),
                "choices": [{"index": 0, "delta": {"content": f"{script.content}{i} "}, "finish_reason": None}],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if script.chunk_delay_s:
                await asyncio.sleep(script.chunk_delay_s)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        self.completed_streams += 1
        return response

    async def _stream_pieces(self, request: web.Request, response: web.StreamResponse, payload: dict[str, Any],
                             pieces: list[str]) -> web.StreamResponse:
        base = {"id": "cmpl-2", "object": "chat.completion.chunk", "created": 0, "model": payload.get("model")}
        role = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        first = {**base, "choices": [role]}
        await response.write(f"data: {json.dumps(first)}\n\n".encode())
        for piece in pieces:
            chunk = {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.sent_pieces += 1
            if self.script.chunk_delay_s:
                await asyncio.sleep(self.script.chunk_delay_s)
        last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        await response.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
        await response.write_eof()
        self.completed_streams += 1
        return response

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.read()
        self._record(request, body)
        return web.json_response(
            {
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                "model": "fake-model",
            }
        )

    async def _models(self, request: web.Request) -> web.Response:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": self.name} for m in self.script.models]
        return web.json_response({"object": "list", "data": data})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"}, status=200 if self.script.status == 200 else 503)

    async def _echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        self._record(request, body)
        return web.json_response({"echo": request.path_qs, "method": request.method, "served_by": self.name})
