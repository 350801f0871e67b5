"""An upstream that answers exactly the bytes a test scripts, on every route, and records what it was sent.

The coverage tests put a marker in one slot of a real answer shape (JSON, SSE with `event:` lines,
CR or CRLF endings, comments) and check that it never reaches the client; a real server cannot be
told to write a marker into `reasoning_content` or a Responses `.done` event, this can.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.local_server import LocalServer


@dataclass
class Answer:
    status: int = 200
    content_type: str = "application/json"
    chunks: list[bytes] = field(default_factory=lambda: [b'{"choices": []}'])
    delay_s: float = 0.0  # between chunks


def sse(events: list[tuple[str, dict[str, Any] | str]], newline: str = "\n") -> list[bytes]:
    """Events as SSE chunks, each `(event name or "", data)`, with the given line ending."""
    out = []
    for name, data in events:
        text = data if isinstance(data, str) else json.dumps(data)
        head = f"event: {name}{newline}" if name else ""
        out.append(f"{head}data: {text}{newline}{newline}".encode())
    return out


class ScriptedUpstream(LocalServer):
    def __init__(self) -> None:
        self.answer = Answer()
        self.bodies: list[bytes] = []
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self.app = app

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.read())
        answer = self.answer
        response = web.StreamResponse(status=answer.status, headers={"Content-Type": answer.content_type})
        await response.prepare(request)
        for chunk in answer.chunks:
            await response.write(chunk)
            if answer.delay_s:
                await asyncio.sleep(answer.delay_s)
        await response.write_eof()
        return response
