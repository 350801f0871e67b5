"""Audit mode for responses: bytes pass untouched; the text is scanned afterwards, off the request path."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from proxy.wire.sse import SSEDecoder, delta_texts
from proxy.wire.texts import response_slots


class AuditTap:
    def __init__(self, is_sse: bool, limit: int, submit: Callable[[list[str]], Awaitable[None]],
                 spawn: Callable[[Awaitable[None]], None]) -> None:
        self.is_sse = is_sse
        self.limit = limit
        self.submit = submit
        self.spawn = spawn
        self.stopped = False
        self._decoder = SSEDecoder()
        self._texts: dict[int, list[str]] = {}
        self._body: list[bytes] = []
        self._size = 0

    async def feed(self, chunk: bytes) -> bytes:
        self._size += len(chunk)
        if self._size <= self.limit:
            if self.is_sse:
                for data in self._decoder.feed(chunk):
                    self._collect(data)
            else:
                self._body.append(chunk)
        return chunk

    def _collect(self, data: str) -> None:
        for index, text in delta_texts(data):
            self._texts.setdefault(index, []).append(text)

    def _final_texts(self) -> list[str]:
        if self.is_sse:
            return ["".join(parts) for _, parts in sorted(self._texts.items())]
        try:
            payload: Any = json.loads(b"".join(self._body))
        except (ValueError, RecursionError):
            return []
        return [slot.get() for _, slot in response_slots(payload)] if isinstance(payload, dict) else []

    async def finish(self) -> bytes:
        texts = [t for t in self._final_texts() if t]
        if texts:
            self.spawn(self.submit(texts))
        return b""
