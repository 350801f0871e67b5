"""The tap most observers want: keep what the client received, read its text at the end.

Review, drift and cache each watch answers through a `Capture` (the protocol it satisfies,
`Tap`, lives with the request record in proxy/exchange.py).
"""

from __future__ import annotations

from collections.abc import Callable

from proxy.wire.streams import output_text


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

