"""Audit mode for responses: bytes pass untouched; the text is scanned afterwards, off the request path."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from proxy.wire.sse import SSEDecoder
from proxy.wire.streams import Channel, ChatCodec, Codec
from proxy.wire.texts import ANSWER_CONTROL, text_slots


class AuditTap:
    def __init__(self, is_sse: bool, limit: int, submit: Callable[[list[str]], Awaitable[None]],
                 spawn: Callable[[Awaitable[None]], None], codec: Codec | None = None) -> None:
        self.is_sse = is_sse
        self.limit = limit
        self.submit = submit
        self.spawn = spawn
        self.codec = codec if codec is not None else ChatCodec()
        self.stopped = False
        self._decoder = SSEDecoder()
        self._texts: dict[Channel, list[str]] = {}
        self._whole: list[str] = []
        self._body: list[bytes] = []
        self._size = 0

    async def feed(self, chunk: bytes) -> bytes:
        self._size += len(chunk)
        if self._size <= self.limit:
            if self.is_sse:
                for event in self._decoder.events(chunk):
                    self._collect(event.event, event.data)
            else:
                self._body.append(chunk)
        return chunk

    def _collect(self, name: str, data: str) -> None:
        try:
            event = json.loads(data)
        except (ValueError, RecursionError):
            if data.strip() != "[DONE]":
                self._whole.append(data)
            return
        if not isinstance(event, dict):
            return
        split = self.codec.split(name, event)
        for channel, text in split.pieces:
            self._texts.setdefault(channel, []).append(text)
        if split.whole and split.rest is not None:
            self._whole += [slot.get() for slot in text_slots(split.rest, ANSWER_CONTROL)]

    def _final_texts(self) -> list[str]:
        if self.is_sse:
            return ["".join(parts) for parts in self._texts.values()] + self._whole
        try:
            payload: Any = json.loads(b"".join(self._body))
        except (ValueError, RecursionError):
            return []
        return [slot.get() for slot in text_slots(payload, ANSWER_CONTROL)] if isinstance(payload, dict) else []

    async def finish(self) -> bytes:
        texts = [t for t in self._final_texts() if t]
        if texts:
            self.spawn(self.submit(texts))
        return b""
