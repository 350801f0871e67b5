"""Request coalescing: one upstream answer in flight, recorded once and fanned out to identical requests.

The first request (the leader) goes through the relay as usual; a `Flight` rides on its
exchange as a tap and receives the backend's bytes before policy. Each follower gets its own
bounded buffer of those bytes and applies its own requester's policy to them, exactly as if
they had come from the backend. A follower that falls more than `limit` bytes behind is cut
off rather than let memory grow; one that joins late is handed what was recorded so far.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class Follower:
    def __init__(self, limit: int, flight: Flight) -> None:
        self.limit = limit
        self.flight = flight
        self.overflowed = False
        self._pending: deque[bytes] = deque()
        self._size = 0
        self._ended: bool | None = None  # None while in flight; then whether the answer came whole
        self._wake = asyncio.Event()

    def push(self, chunk: bytes) -> None:
        if self.overflowed or not chunk:
            return
        if self._size + len(chunk) > self.limit:
            self.overflowed = True
            self._pending.clear()
            self._wake.set()
            return
        self._pending.append(chunk)
        self._size += len(chunk)
        self._wake.set()

    def end(self, complete: bool) -> None:
        self._ended = complete
        self._wake.set()

    async def next(self) -> bytes | None:
        """The next chunk, or None once the answer has ended (or this follower was cut off)."""
        while True:
            if self.overflowed:
                return None
            if self._pending:
                chunk = self._pending.popleft()
                self._size -= len(chunk)
                return chunk
            if self._ended is not None:
                return None
            self._wake.clear()
            await self._wake.wait()

    @property
    def complete(self) -> bool:
        """The whole answer reached this follower: it ended well and nothing was dropped."""
        return bool(self._ended) and not self.overflowed

    def head(self) -> tuple[int, str]:
        """Status and content type: known once the first chunk (or the end) has come."""
        return self.flight.status, self.flight.content_type


class Flight:
    """A tap on the leader's exchange (proxy/taps.py) that records and fans out the raw answer."""

    def __init__(self, limit: int, on_end: Callable[[Flight], None]) -> None:
        self.limit = limit
        self.on_end = on_end
        self.status = 0
        self.content_type = ""
        self.chunks: list[bytes] = []
        self.size = 0
        self.overflowed = False  # over `limit`: not stored, and no one new may join
        self.ended = False
        self.complete = False
        self.followers: list[Follower] = []

    @property
    def joinable(self) -> bool:
        return not self.overflowed and (not self.ended or self.complete)

    def join(self) -> Follower:
        follower = Follower(self.limit, self)
        for chunk in self.chunks:
            follower.push(chunk)
        if self.ended:
            follower.end(self.complete)
        else:
            self.followers.append(follower)
        return follower

    def start(self, status: int, content_type: str) -> None:
        # A retried attempt starts again; nothing of the failed one was recorded (the relay taps
        # bytes only once they are certain to reach the client).
        self.status, self.content_type = status, content_type

    def upstream(self, chunk: bytes) -> None:
        if not chunk:
            return
        if not self.overflowed:
            self.size += len(chunk)
            if self.size > self.limit:
                self.overflowed = True
                self.chunks = []
            else:
                self.chunks.append(chunk)
        for follower in self.followers:
            follower.push(chunk)

    def client(self, chunk: bytes) -> None:
        pass

    def end(self, complete: bool) -> None:
        self.ended, self.complete = True, complete
        for follower in self.followers:
            follower.end(complete)
        self.followers = []
        self.on_end(self)
