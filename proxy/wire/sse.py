"""Server-sent events as OpenAI-compatible servers send them: framing, encoding, per-choice text."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class EventTooLarge(ValueError):
    """A backend sent more than the cap without ending an event: it cannot be scanned, only held."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One event as the spec frames it: its `event:` name (empty for the default), its data, its `id:`."""

    data: str
    event: str = ""
    id: str | None = None

    def encode(self) -> bytes:
        head = (f"event: {self.event}\n" if self.event else "") + (f"id: {self.id}\n" if self.id is not None else "")
        lines = "".join(f"data: {line}\n" for line in self.data.split("\n"))
        return (head + lines + "\n").encode()


class SSEDecoder:
    """Splits a byte stream into SSE events (blank-line separated), as the SSE spec frames them.

    Lines may end in LF, CRLF or a lone CR; `event:` and `id:` fields are kept, comments (lines
    starting with `:`) dropped. An unfinished event is held until its blank line comes;
    `max_event_bytes` bounds that hold, so a backend that never ends an event cannot grow the
    proxy's memory without limit.
    """

    def __init__(self, max_event_bytes: int | None = None) -> None:
        self._buffer = b""
        self.max_event_bytes = max_event_bytes

    def feed(self, chunk: bytes) -> list[str]:
        """The data of each finished event with data (what OpenAI's chat and completion streams carry)."""
        return [event.data for event in self.events(chunk)]

    def events(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer + chunk
        # A CR at the very end may be the first half of a CRLF: keep it for the next chunk.
        held_cr = buffer.endswith(b"\r")
        if held_cr:
            buffer = buffer[:-1]
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        found = []
        while (end := buffer.find(b"\n\n")) >= 0:
            raw, buffer = buffer[:end], buffer[end + 2:]
            event = _parse(raw.decode("utf-8", "replace"))
            if event is not None:
                found.append(event)
        self._buffer = buffer + (b"\r" if held_cr else b"")
        if self.max_event_bytes is not None and len(self._buffer) > self.max_event_bytes:
            self._buffer = b""
            raise EventTooLarge(f"an SSE event grew past {self.max_event_bytes} bytes without ending")
        return found

    def close(self) -> list[SSEEvent]:
        """The stream ended: an unterminated last event is still an event (a server may omit the blank line)."""
        return self.events(b"\n\n") if self._buffer.strip() else []

    def rest(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest


def _parse(raw: str) -> SSEEvent | None:
    data: list[str] = []
    name, ident = "", None
    for line in raw.split("\n"):
        if not line or line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
        elif field == "id":
            ident = value
    return SSEEvent("\n".join(data), name, ident) if data else None


def choice_index(choice: dict[str, Any]) -> int:
    """A choice's index as sent; a backend's malformed one counts as choice 0 rather than failing."""
    index = choice.get("index", 0)
    return index if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < 1024 else 0


def sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
