"""Key, directives, the LRU store (byte cap, TTL) and the coalescing buffers, without a server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proxy.cache.flight import Flight, Follower
from proxy.cache.key import cache_key, deterministic, directives
from proxy.cache.settings import CacheSettings
from proxy.cache.store import Entry, MemoryStore
from proxy.errors import InvalidRequest

CHAT: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}


def key(payload: dict[str, Any], route: str = "/v1/chat/completions", group: str = "g", ns: str = "t:a") -> str:
    return cache_key(route, group, ns, payload)


@pytest.mark.parametrize(("extra", "expected"), [
    ({"temperature": 0}, True), ({"temperature": 0.0}, True), ({"seed": 7}, True),
    ({"temperature": 0.7, "seed": 1}, True), ({"temperature": 0.7}, False), ({}, False),
    ({"seed": True}, False), ({"seed": "7"}, False), ({"temperature": False}, False), ({"temperature": None}, False),
])
def test_only_deterministic_requests_are_cacheable(extra: dict[str, Any], expected: bool) -> None:
    assert deterministic({"model": "m", **extra}) is expected


def test_spellings_of_the_same_request_share_a_key() -> None:
    base = key(CHAT)
    assert key({"temperature": 0.0, "messages": [{"content": "hi", "role": "user"}], "model": "m"}) == base
    assert key({**CHAT, "stream": False}) == base
    assert key({**CHAT, "top_p": None}) == base
    assert key({**CHAT, "max_tokens": 16.0}) == key({**CHAT, "max_tokens": 16})


def test_whatever_can_change_the_answer_changes_the_key() -> None:
    base = key(CHAT)
    others = [key({**CHAT, "stream": True}), key({**CHAT, "messages": [{"role": "user", "content": "hi!"}]}),
              key({**CHAT, "model": "m2"}), key({**CHAT, "max_tokens": 5}), key(CHAT, route="/v1/completions"),
              key(CHAT, group="other"), key(CHAT, ns="t:b"), key(CHAT, ns="*")]
    assert len({base, *others}) == len(others) + 1


@pytest.mark.parametrize(("headers", "read", "write", "force"), [
    ({}, True, True, False),
    ({"Cache-Control": "no-cache"}, False, True, False),
    ({"Cache-Control": "max-age=0, no-store"}, False, False, False),
    ({"X-Warden-Cache": "bypass"}, False, False, False),
    ({"X-Warden-Cache": "refresh"}, False, True, False),
    ({"X-Warden-Cache": " Force "}, True, True, True),
])
def test_directives(headers: dict[str, str], read: bool, write: bool, force: bool) -> None:
    asked = directives(headers)
    assert (asked.read, asked.write, asked.force) == (read, write, force)


def test_an_unknown_directive_is_an_error_not_a_silent_miss() -> None:
    with pytest.raises(InvalidRequest):
        directives({"X-Warden-Cache": "bypas"})


def test_settings_refuse_an_entry_larger_than_the_store() -> None:
    with pytest.raises(ValueError, match="max_entry_bytes"):
        CacheSettings(max_bytes=10, max_entry_bytes=11)
    assert CacheSettings().enabled is False


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def entry(size: int, at: float = 0.0) -> Entry:
    return Entry.of(200, "application/json", [b"x" * size], at)


async def test_lru_eviction_keeps_the_byte_cap_and_spares_recently_read_entries() -> None:
    evicted: list[str] = []
    store = MemoryStore(max_bytes=300, ttl_s=60, clock=Clock(), on_evict=evicted.append)
    for name in ("a", "b", "c"):
        await store.put(name, entry(100))
    assert await store.get("a") is not None  # a is now the most recent; b is the oldest
    await store.put("d", entry(100))
    assert "b" not in store and all(k in store for k in ("a", "c", "d"))
    assert store.bytes == 300 and evicted == ["lru"]
    await store.put("e", entry(250))  # needs room for 250: three go
    assert store.bytes == 250 and len(store) == 1 and evicted.count("lru") == 4
    await store.put("huge", entry(301))  # never fits: not stored, nothing evicted for it
    assert "huge" not in store and "e" in store


async def test_entries_expire_after_their_ttl() -> None:
    clock = Clock()
    reasons: list[str] = []
    store = MemoryStore(max_bytes=1000, ttl_s=10, clock=clock, on_evict=reasons.append)
    await store.put("a", entry(10, at=clock()))
    clock.now = 9.9
    assert await store.get("a") is not None
    clock.now = 10.0
    assert await store.get("a") is None and store.bytes == 0 and reasons == ["expired"]


async def test_replacing_an_entry_counts_its_bytes_once() -> None:
    store = MemoryStore(max_bytes=1000, ttl_s=10, clock=Clock())
    await store.put("a", entry(100))
    await store.put("a", entry(200))
    assert store.bytes == 200 and len(store) == 1


async def test_a_follower_that_falls_too_far_behind_is_cut_off_not_buffered() -> None:
    follower = Flight(limit=10, on_end=lambda f: None).join()
    follower.push(b"12345")
    follower.push(b"67890")
    assert await follower.next() == b"12345"
    follower.push(b"abcdef")  # 5 pending + 6 > 10
    follower.end(True)
    assert await follower.next() is None and not follower.complete


async def test_followers_get_every_chunk_also_when_joining_late() -> None:
    ended: list[Flight] = []
    flight = Flight(limit=100, on_end=ended.append)
    flight.start(200, "text/event-stream")
    early = flight.join()
    flight.upstream(b"one ")
    late = flight.join()
    flight.upstream(b"two")

    async def read(f: Follower) -> bytes:
        out = b""
        while (chunk := await f.next()) is not None:
            out += chunk
        return out

    readers = [asyncio.ensure_future(read(f)) for f in (early, late)]
    await asyncio.sleep(0)
    flight.end(True)
    assert await asyncio.gather(*readers) == [b"one two", b"one two"]
    assert early.complete and late.complete and ended == [flight]
    after = flight.join()  # joined after the end, before the entry was stored
    assert await read(after) == b"one two" and after.complete


def test_an_answer_over_the_entry_limit_is_not_recorded_and_not_joinable() -> None:
    flight = Flight(limit=5, on_end=lambda f: None)
    flight.start(200, "application/json")
    flight.upstream(b"123")
    assert flight.joinable
    flight.upstream(b"456")
    assert flight.overflowed and flight.chunks == [] and not flight.joinable


def test_an_incomplete_answer_is_not_joinable_after_it_ended() -> None:
    flight = Flight(limit=100, on_end=lambda f: None)
    flight.start(200, "application/json")
    flight.upstream(b"{")
    flight.end(False)
    assert not flight.joinable
