"""The shared store: two replicas, one Redis, one upstream call; tenants still apart; Redis away is a miss."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp

from proxy.cache.redis_store import decode, encode
from proxy.cache.store import Entry
from tests.proxy.cache.conftest import TENANT, CachedProxyFactory, cache_config
from tests.proxy.conftest import RunningProxy, UpstreamFactory
from tests.support.llama import free_port

CHAT: dict[str, Any] = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}


async def post(http: aiohttp.ClientSession, proxy: RunningProxy, body: dict[str, Any],
               **headers: str) -> tuple[str, str]:
    async with http.post(proxy.url + "/v1/chat/completions", json=body, headers=headers) as resp:
        assert resp.status == 200
        return resp.headers["X-Warden-Cache"], await resp.text()


async def stored(redis_url: str, prefix: str, count: int) -> None:
    """Answers are stored after their exchange ends: wait until Redis holds them."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        for _ in range(500):
            if len(await client.keys(prefix + "*")) >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"Redis never held {count} entries")
    finally:
        await client.aclose()


def shared(url: str, redis_url: str, prefix: str) -> dict[str, Any]:
    return cache_config(url, store="redis", redis_url=redis_url, redis_prefix=prefix, coalesce=False)


async def test_replicas_share_answers_through_redis(make_upstream: UpstreamFactory,
                                                   make_cached_proxy: CachedProxyFactory,
                                                   http: aiohttp.ClientSession, redis_url: str) -> None:
    up = await make_upstream()
    up.script.pieces = ["shared ", "answer"]
    prefix = f"t-{uuid.uuid4().hex}:"
    a = await make_cached_proxy(shared(up.url, redis_url, prefix))
    b = await make_cached_proxy(shared(up.url, redis_url, prefix))
    first = await post(http, a, CHAT)
    assert first[0] == "miss"
    await stored(redis_url, prefix, 1)
    for proxy in (b, a):
        how, body = await post(http, proxy, CHAT)
        assert (how, body) == ("hit", first[1])
    streamed = [await post(http, a, {**CHAT, "stream": True})]
    await stored(redis_url, prefix, 2)
    streamed.append(await post(http, b, {**CHAT, "stream": True}))
    assert [s[0] for s in streamed] == ["miss", "hit"] and streamed[0][1] == streamed[1][1]
    assert streamed[1][1].rstrip().endswith("data: [DONE]")
    assert (await post(http, b, CHAT, **{TENANT: "other"}))[0] == "miss"  # never across tenants
    assert len(up.requests) == 3


async def test_redis_away_means_misses_not_failures(make_upstream: UpstreamFactory,
                                                    make_cached_proxy: CachedProxyFactory,
                                                    http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    proxy = await make_cached_proxy(shared(up.url, f"redis://127.0.0.1:{free_port()}/0", "x:"))
    assert [(await post(http, proxy, CHAT))[0] for _ in range(2)] == ["miss", "miss"]
    assert len(up.requests) == 2
    assert proxy.metric("warden_cache_store_errors_total", {"op": "get"}) == 2
    assert proxy.metric("warden_cache_store_errors_total", {"op": "put"}) >= 1


def test_frames_round_trip_and_junk_is_refused() -> None:
    entry = Entry.of(200, "text/event-stream", [b"data: a\n\n", b"", b"data: [DONE]\n\n"], 1234.5)
    assert decode(encode(entry)) == entry
    frame = encode(entry)
    for junk in (b"", b"pickle", frame[:-1], frame + b"x", b"WC1\x00" + b"\xff" * 5):
        assert decode(junk) is None
