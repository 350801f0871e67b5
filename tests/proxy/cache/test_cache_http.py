"""The cache through the running proxy: hits and misses by the rules, tenants, streams, eviction, audit."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from openai import AsyncOpenAI

from tests.proxy.cache.conftest import TENANT, CachedProxyFactory, cache_config
from tests.proxy.conftest import RunningProxy, UpstreamFactory

CHAT: dict[str, Any] = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
URL = "/v1/chat/completions"


async def post(http: aiohttp.ClientSession, proxy: RunningProxy, body: dict[str, Any],
               **headers: str) -> tuple[str, bytes, int]:
    """The X-Warden-Cache answer, the body and the status."""
    async with http.post(proxy.url + URL, json=body, headers=headers) as resp:
        return resp.headers.get("X-Warden-Cache", ""), await resp.read(), resp.status


def results(proxy: RunningProxy) -> dict[str, float]:
    return {r: proxy.metric("warden_cache_requests_total", {"result": r})
            for r in ("hit", "miss", "coalesced", "bypass", "uncacheable")}


async def test_a_repeated_deterministic_request_is_answered_from_the_cache(
        make_upstream: UpstreamFactory, make_cached_proxy: CachedProxyFactory, http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    up.script.content = "the answer"
    proxy = await make_cached_proxy(cache_config(up.url))
    first = await post(http, proxy, CHAT)
    second = await post(http, proxy, {**CHAT, "temperature": 0.0, "stream": False})  # same request, other spelling
    third = await post(http, proxy, {**CHAT, "seed": 3})  # another request: its own miss
    assert [first[0], second[0], third[0]] == ["miss", "hit", "miss"]
    assert first[1] == second[1] and json.loads(second[1])["choices"][0]["message"]["content"] == "the answer"
    assert len(up.requests) == 2
    assert results(proxy) == {"hit": 1, "miss": 2, "coalesced": 0, "bypass": 0, "uncacheable": 0}
    assert proxy.metric("warden_cache_bytes_saved_total") == len(first[1])
    assert proxy.metric("warden_cache_entries") == 2


async def test_sampled_requests_are_not_cached_unless_the_client_opts_in(
        make_upstream: UpstreamFactory, make_cached_proxy: CachedProxyFactory, http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    proxy = await make_cached_proxy(cache_config(up.url))
    sampled = {**CHAT, "temperature": 0.8}
    assert [(await post(http, proxy, sampled))[0] for _ in range(2)] == ["bypass", "bypass"]
    assert len(up.requests) == 2
    forced = [(await post(http, proxy, sampled, **{"X-Warden-Cache": "force"}))[0] for _ in range(2)]
    assert forced == ["miss", "hit"] and len(up.requests) == 3
    assert results(proxy)["uncacheable"] == 2


async def test_no_cache_refreshes_and_bypass_leaves_the_cache_alone(
        make_upstream: UpstreamFactory, make_cached_proxy: CachedProxyFactory, http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    proxy = await make_cached_proxy(cache_config(up.url))
    up.script.content = "old"
    await post(http, proxy, CHAT)
    up.script.content = "new"
    assert (await post(http, proxy, CHAT))[1].count(b"old") == 1  # a hit
    refreshed = await post(http, proxy, CHAT, **{"Cache-Control": "no-cache"})
    assert refreshed[0] == "miss" and b"new" in refreshed[1]
    assert b"new" in (await post(http, proxy, CHAT))[1]  # the refresh was stored
    up.script.content = "newest"
    bypassed = await post(http, proxy, CHAT, **{"X-Warden-Cache": "bypass"})
    assert bypassed[0] == "bypass" and b"newest" in bypassed[1]
    assert b'"new"' in (await post(http, proxy, CHAT))[1]  # ...and was not
    assert len(up.requests) == 3
    assert (await post(http, proxy, CHAT, **{"X-Warden-Cache": "nonsense"}))[2] == 400


async def test_tenants_never_share_answers_unless_configured(
        make_upstream: UpstreamFactory, make_cached_proxy: CachedProxyFactory, http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    proxy = await make_cached_proxy(cache_config(up.url))
    seen = [(await post(http, proxy, CHAT, **{TENANT: t}))[0] for t in ("a", "b", "a", "b")]
    assert seen == ["miss", "miss", "hit", "hit"] and len(up.requests) == 2
    shared_up = await make_upstream()
    shared = await make_cached_proxy(cache_config(shared_up.url, shared_across_tenants=True))
    seen = [(await post(http, shared, CHAT, **{TENANT: t}))[0] for t in ("a", "b")]
    assert seen == ["miss", "hit"] and len(shared_up.requests) == 1


async def test_a_streamed_hit_is_valid_sse_to_its_done(
        make_upstream: UpstreamFactory, make_cached_proxy: CachedProxyFactory) -> None:
    up = await make_upstream()
    up.script.pieces = ["Hel", "lo ", "world"]
    proxy = await make_cached_proxy(cache_config(up.url))
    texts, hows = [], []
    async with AsyncOpenAI(base_url=proxy.url + "/v1", api_key="k", max_retries=0) as openai:
        for _ in range(2):
            raw = await openai.chat.completions.with_raw_response.create(
                model="fake-model", messages=CHAT["messages"], temperature=0, stream=True)
            hows.append(raw.headers["X-Warden-Cache"])
            assert raw.headers["Content-Type"].startswith("text/event-stream")
            text = ""
            async for chunk in raw.parse():
                text += "".join(c.delta.content or "" for c in chunk.choices)
            texts.append(text)
    assert hows == ["miss", "hit"] and texts == ["Hello world"] * 2 and len(up.requests) == 1
    async with aiohttp.ClientSession() as http:
        how, body, _ = await post(http, proxy, {**CHAT, "stream": True})
    assert how == "hit" and body.rstrip().endswith(b"data: [DONE]") and body.count(b"data: ") == 6


async def test_eviction_honours_the_byte_cap(
        make_upstream: UpstreamFactory, make_cached_proxy: CachedProxyFactory, http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    proxy = await make_cached_proxy(cache_config(up.url))
    size = len((await post(http, proxy, {**CHAT, "seed": 0}))[1])
    cap = 2 * size + size // 2  # room for two answers, not three
    capped_up = await make_upstream()
    capped = await make_cached_proxy(cache_config(capped_up.url, max_bytes=cap, max_entry_bytes=cap))
    for seed in (1, 2, 3):
        assert (await post(http, capped, {**CHAT, "seed": seed}))[0] == "miss"
        await asyncio.sleep(0.01)  # the store is written just after the answer went out
        assert capped.metric("warden_cache_bytes") <= cap
    assert capped.metric("warden_cache_entries") == 2
    assert capped.metric("warden_cache_evictions_total", {"reason": "lru"}) == 1
    assert [(await post(http, capped, {**CHAT, "seed": s}))[0] for s in (3, 2, 1)] == ["hit", "hit", "miss"]


async def test_entries_expire(make_upstream: UpstreamFactory, make_cached_proxy: CachedProxyFactory,
                              http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    proxy = await make_cached_proxy(cache_config(up.url, ttl_s=0.2))
    assert (await post(http, proxy, CHAT))[0] == "miss"
    assert (await post(http, proxy, CHAT))[0] == "hit"
    await asyncio.sleep(0.25)
    assert (await post(http, proxy, CHAT))[0] == "miss"


async def test_errors_and_cut_streams_are_not_stored(
        make_upstream: UpstreamFactory, make_cached_proxy: CachedProxyFactory, http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    proxy = await make_cached_proxy(cache_config(up.url))
    up.script.status = 400
    assert [(await post(http, proxy, CHAT))[2] for _ in range(2)] == [400, 400]
    up.script.status = 200
    up.script.cut_stream_after = 2
    for _ in range(2):
        how, body, _ = await post(http, proxy, {**CHAT, "stream": True})
        assert how == "miss" and b"[DONE]" not in body
        for _ in range(100):  # the cut ejected the backend; wait for its probe to bring it back
            if proxy.state.pool.groups[0].healthy_count:
                break
            await asyncio.sleep(0.02)
    assert len(up.requests) == 4 and proxy.metric("warden_cache_entries") == 0


async def test_hits_are_audited(make_upstream: UpstreamFactory, make_cached_proxy: CachedProxyFactory,
                                http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    proxy = await make_cached_proxy(cache_config(up.url))
    cache = proxy.state.cache
    assert cache is not None
    rows: list[tuple[str, dict[str, Any]]] = []
    cache.emit = lambda table, row: rows.append((table, row))
    await post(http, proxy, CHAT, **{TENANT: "acme"})
    assert rows == []  # a miss is an ordinary request: its requests row says all
    async with http.post(proxy.url + URL, json=CHAT, headers={TENANT: "acme", "X-Request-Id": "req-7"}) as resp:
        rid = resp.headers["X-Request-Id"]  # Warden's own id, not the client's (issue 23, class 5)
        assert resp.headers["X-Warden-Cache"] == "hit" and rid != "req-7"
    [(table, row)] = rows
    assert table == "audit_actions"
    assert (row["actor"], row["action"], row["tenant"], row["request_id"], row["outcome"]) == (
        "cache", "cache_hit", "acme", rid, "200")
    assert row["details"]["route"] == URL and int(row["details"]["bytes"]) > 0
