"""Stored answers: the raw upstream answer (before any policy), so each requester's policy applies on a hit.

`Store` is the seam for a shared store across replicas (Redis): `get` and `put` are async for
that reason, although the in-memory store never waits. An implementation must honour the TTL
itself and may drop entries at will; it must never return an entry under another key.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Entry:
    """One upstream answer as the backend sent it: replayed chunk by chunk, so a stream stays a stream."""

    status: int
    content_type: str
    chunks: tuple[bytes, ...]
    size: int
    stored_at: float  # the store's clock (monotonic for memory)

    @classmethod
    def of(cls, status: int, content_type: str, chunks: list[bytes], now: float) -> Entry:
        return cls(status, content_type, tuple(chunks), sum(len(c) for c in chunks), now)


class Store(Protocol):
    def now(self) -> float: ...
    async def get(self, key: str) -> Entry | None: ...
    async def put(self, key: str, entry: Entry) -> None: ...


class MemoryStore:
    """LRU under a byte cap, with a TTL checked on read (an expired entry is dropped when met, or evicted)."""

    def __init__(self, max_bytes: int, ttl_s: float, clock: Callable[[], float] = time.monotonic,
                 on_evict: Callable[[str], None] | None = None) -> None:
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.clock = clock
        self.on_evict = on_evict  # called with the reason: "lru", "expired" or "replaced"
        self.bytes = 0
        self._entries: OrderedDict[str, Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def now(self) -> float:
        return self.clock()

    async def get(self, key: str) -> Entry | None:
        return self.lookup(key)

    def lookup(self, key: str) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self.clock() - entry.stored_at >= self.ttl_s:
            self._drop(key, "expired")
            return None
        self._entries.move_to_end(key)
        return entry

    async def put(self, key: str, entry: Entry) -> None:
        self.insert(key, entry)

    def insert(self, key: str, entry: Entry) -> None:
        if entry.size > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key, "replaced")
        while self._entries and self.bytes + entry.size > self.max_bytes:
            oldest = next(iter(self._entries))
            expired = self.clock() - self._entries[oldest].stored_at >= self.ttl_s
            self._drop(oldest, "expired" if expired else "lru")
        self._entries[key] = entry
        self.bytes += entry.size

    def _drop(self, key: str, reason: str) -> None:
        entry = self._entries.pop(key)
        self.bytes -= entry.size
        if self.on_evict is not None:
            self.on_evict(reason)
