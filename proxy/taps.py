"""Observers of finished exchanges: how review, drift and cache see traffic without owning the relay.

An observer is asked once per OpenAI request, before it is forwarded, whether it wants to
watch; if it returns a tap, the relay hands the tap every chunk (as the backend sent it and as
the client received it) and says when the answer ended. Taps run on the hot path, so they only
keep references; anything slow is spawned by their owner after `end`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from proxy.policy.stream import SSEDecoder
from proxy.policy.texts import response_slots

if TYPE_CHECKING:
    from proxy.relay import Exchange


class Tap(Protocol):
    def start(self, status: int, content_type: str) -> None:
        """The answer's head. Comes again after a retried attempt: forget what came before."""

    def upstream(self, chunk: bytes) -> None:
        """Bytes as the backend sent them (before policy)."""

    def client(self, chunk: bytes) -> None:
        """Bytes as the client received them (after policy)."""

    def end(self, complete: bool) -> None:
        """Once per exchange, also when no answer came; `complete`: relayed to its end, nothing failed."""


Observer = Callable[["Exchange", dict[str, Any]], Tap | None]


class Capture:
    """Keeps what the client received, up to a byte cap, and reads the output text from it at the end."""

    def __init__(self, max_bytes: int = 1 << 20, on_end: Callable[[Capture], None] | None = None) -> None:
        self.max_bytes = max_bytes
        self.on_end = on_end
        self.status = 0
        self.content_type = ""
        self.complete = False
        self.truncated = False
        self.ended = False
        self._chunks: list[bytes] = []
        self._size = 0

    def start(self, status: int, content_type: str) -> None:
        self.status, self.content_type = status, content_type
        self._chunks, self._size, self.truncated = [], 0, False

    def upstream(self, chunk: bytes) -> None:
        pass

    def client(self, chunk: bytes) -> None:
        if self._size + len(chunk) > self.max_bytes:
            self.truncated = True
            return
        self._chunks.append(chunk)
        self._size += len(chunk)

    def end(self, complete: bool) -> None:
        self.complete, self.ended = complete, True
        if self.on_end is not None:
            self.on_end(self)

    @property
    def body(self) -> bytes:
        return b"".join(self._chunks)

    def text(self) -> str:
        """The output text as the client saw it: choices' content for JSON, joined deltas for SSE."""
        return output_text(self.content_type, self.body)


def output_text(content_type: str, body: bytes) -> str:
    if content_type == "text/event-stream":
        return _sse_text(body)
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    if not isinstance(payload, dict):
        return ""
    return "\n".join(slot.get() for _, slot in response_slots(payload))


def _sse_text(body: bytes) -> str:
    """Deltas per choice index, joined in index order; events that are not JSON are skipped."""
    parts: dict[int, list[str]] = {}
    for data in SSEDecoder().feed(body + b"\n\n"):
        try:
            event = json.loads(data)
        except (ValueError, RecursionError):
            continue
        if not isinstance(event, dict):
            continue
        for choice in event.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            if isinstance(text, str) and isinstance(index, int):
                parts.setdefault(index, []).append(text)
    return "\n".join("".join(parts[i]) for i in sorted(parts))
