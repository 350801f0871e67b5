"""Server-sent events as OpenAI-compatible servers send them: framing, encoding, per-choice text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any


class EventTooLarge(ValueError):
    """A backend sent more than the cap without ending an event: it cannot be scanned, only held."""


class SSEDecoder:
    """Splits a byte stream into SSE events (blank-line separated), returning each event's data.

    An unfinished event is held until its blank line comes; `max_event_bytes` bounds that hold,
    so a backend that never ends an event cannot grow the proxy's memory without limit.
    """

    def __init__(self, max_event_bytes: int | None = None) -> None:
        self._buffer = b""
        self.max_event_bytes = max_event_bytes

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk.replace(b"\r\n", b"\n")
        events = []
        while (end := self._buffer.find(b"\n\n")) >= 0:
            raw, self._buffer = self._buffer[:end], self._buffer[end + 2:]
            lines = raw.decode("utf-8", "replace").split("\n")
            data = [line[5:].removeprefix(" ") for line in lines if line.startswith("data:")]
            if data:
                events.append("\n".join(data))
        if self.max_event_bytes is not None and len(self._buffer) > self.max_event_bytes:
            self._buffer = b""
            raise EventTooLarge(f"an SSE event grew past {self.max_event_bytes} bytes without ending")
        return events

    def rest(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest


def choice_index(choice: dict[str, Any]) -> int:
    """A choice's index as sent; a backend's malformed one counts as choice 0 rather than failing."""
    index = choice.get("index", 0)
    return index if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < 1024 else 0


def sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def delta_texts(data: str) -> Iterator[tuple[int, str]]:
    """(choice index, text) for each choice of one event's data: chat deltas or legacy completion text.

    Data that is not a JSON object (`[DONE]`, a backend's garbage) carries no text, so it yields nothing
    rather than failing: every reader of a stream (audit, review, drift, cache) wants the same answer.
    """
    try:
        event = json.loads(data)
    except (ValueError, RecursionError):
        return
    choices = event.get("choices") if isinstance(event, dict) else None
    for choice in choices if isinstance(choices, list) else []:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else None
        text = text if isinstance(text, str) else choice.get("text")
        if isinstance(text, str):
            yield choice_index(choice), text


def stream_text(body: bytes) -> list[str]:
    """A whole stream's text per choice, in index order."""
    parts: dict[int, list[str]] = {}
    for data in SSEDecoder().feed(body + b"\n\n"):
        for index, text in delta_texts(data):
            parts.setdefault(index, []).append(text)
    return ["".join(parts[i]) for i in sorted(parts)]
