"""A cache store shared by replicas: Redis, with its own TTL (PX) and its own eviction (maxmemory).

Entries are encoded in a small binary frame, never pickled: whoever can write to the Redis
must not be able to run code in Warden. A frame that does not decode is treated as a miss and
counted. Redis being away is a miss too (and a skipped store), never a failed request.

With encryption at rest (proxy/sealing.py) the frame is sealed under the data key, bound to its
Redis key: whoever reads the Redis sees no answer, and whoever writes it cannot plant one (an
unsealed or altered value is a miss, counted as corrupt). Frames above 64 KiB are sealed and
opened on a thread, where AES over up to `max_entry_bytes` cannot hold the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.cache.store import Entry
from proxy.sealing import Sealer, SealingError, is_sealed

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("warden.cache.redis")
MAGIC = b"WC1\x00"
_HEAD = struct.Struct("!HdHI")  # status, stored_at (wall clock), content-type length, chunk count
_LEN = struct.Struct("!I")
OFF_LOOP_BYTES = 64 << 10  # larger frames are sealed and opened on a thread (~30 us of AES-GCM and up)


def encode(entry: Entry) -> bytes:
    ctype = entry.content_type.encode()
    parts = [MAGIC, _HEAD.pack(entry.status, entry.stored_at, len(ctype), len(entry.chunks)), ctype]
    for chunk in entry.chunks:
        parts += [_LEN.pack(len(chunk)), chunk]
    return b"".join(parts)


def decode(data: bytes) -> Entry | None:
    try:
        if not data.startswith(MAGIC):
            return None
        offset = len(MAGIC)
        status, stored_at, ctype_len, count = _HEAD.unpack_from(data, offset)
        offset += _HEAD.size
        ctype = data[offset:offset + ctype_len].decode()
        offset += ctype_len
        chunks = []
        for _ in range(count):
            (size,) = _LEN.unpack_from(data, offset)
            offset += _LEN.size
            chunk = data[offset:offset + size]
            if len(chunk) != size:
                return None
            chunks.append(chunk)
            offset += size
        if offset != len(data):
            return None
        return Entry.of(status, ctype, chunks, stored_at)
    except (struct.error, UnicodeDecodeError):
        return None


class RedisStore:
    def __init__(self, url: str, ttl_s: float, prefix: str, on_error: Callable[[str], None],
                 timeout_s: float = 0.5, sealer: Sealer | None = None) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError:
            raise RuntimeError("cache.store is redis, but the redis package is not installed "
                               "(pip install 'llm-warden[redis]')") from None
        self.client: Redis = aioredis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self.ttl_ms = int(ttl_s * 1000)
        self.prefix = prefix
        self.on_error = on_error
        self._errors = (aioredis.RedisError, OSError, TimeoutError)
        self.sealer = sealer
        self._told: set[str] = set()  # sealing failures already logged (one line per reason, not per hit)

    def now(self) -> float:
        return time.time()  # shared by replicas: ages must compare across machines

    async def get(self, key: str) -> Entry | None:
        try:
            data = await self.client.get(self.prefix + key)
        except self._errors as exc:
            self.on_error("get")
            log.warning("cache read skipped, Redis unavailable: %s", type(exc).__name__)
            return None
        if not isinstance(data, bytes):
            return None
        if self.sealer is not None:
            opened = await self._open(key, data)
            if opened is None:
                self.on_error("corrupt")
                return None
            data = opened
        entry = decode(data)
        if entry is None:
            self.on_error("corrupt")
        return entry

    async def put(self, key: str, entry: Entry) -> None:
        try:
            await self.client.set(self.prefix + key, await self._seal(key, encode(entry)), px=self.ttl_ms)
        except self._errors as exc:
            self.on_error("put")
            log.warning("cache write skipped, Redis unavailable: %s", type(exc).__name__)

    async def _seal(self, key: str, frame: bytes) -> bytes:
        if self.sealer is None:
            return frame
        if len(frame) > OFF_LOOP_BYTES:
            return await asyncio.to_thread(self.sealer.seal, frame, key.encode())
        return self.sealer.seal(frame, key.encode())

    async def _open(self, key: str, data: bytes) -> bytes | None:
        """The frame, or None for a value that is not sealed or does not open here (a miss, never plaintext)."""
        assert self.sealer is not None
        try:
            if not is_sealed(data):
                raise SealingError("an unsealed cache value while encryption at rest is on")
            if len(data) > OFF_LOOP_BYTES:
                return await asyncio.to_thread(self.sealer.open, data, key.encode())
            return self.sealer.open(data, key.encode())
        except SealingError as exc:
            if str(exc) not in self._told and len(self._told) < 16:
                self._told.add(str(exc))
                log.warning("cache entry refused: %s", exc)
            return None

    async def close(self) -> None:
        await self.client.aclose()
