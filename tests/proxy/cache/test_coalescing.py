"""Identical requests in flight share one upstream call; every client gets the whole, same answer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from proxy.cache.service import ResponseCache
from proxy.wire.sse import SSEDecoder
from tests.proxy.cache.conftest import CachedProxyFactory, GatedUpstream, cache_config, wait_for
from tests.proxy.conftest import RunningProxy

CHAT: dict[str, Any] = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
CLIENTS = 50


def cache_of(proxy: RunningProxy) -> ResponseCache:
    cache = proxy.state.cache
    assert cache is not None
    return cache


def followers(proxy: RunningProxy) -> int:
    return sum(len(f.followers) for f in cache_of(proxy).flights.values())


async def fire(proxy: RunningProxy, body: dict[str, Any], clients: int) -> tuple[list[asyncio.Task[Any]],
                                                                                  aiohttp.ClientSession]:
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def one() -> tuple[str, int, bytes]:
        async with http.post(proxy.url + "/v1/chat/completions", json=body) as resp:
            return resp.headers.get("X-Warden-Cache", ""), resp.status, await resp.read()

    return [asyncio.create_task(one()) for _ in range(clients)], http


async def coalesce(proxy: RunningProxy, up: GatedUpstream, body: dict[str, Any],
                   clients: int = CLIENTS) -> list[tuple[str, int, bytes]]:
    """Send `clients` identical requests, open the upstream once all but the leader follow it."""
    tasks, http = await fire(proxy, body, clients)
    try:
        await wait_for(lambda: up.waiting == 1 and followers(proxy) == clients - 1, "every follower to join")
        up.gate.set()
        return list(await asyncio.gather(*tasks))
    finally:
        await http.close()


def sse_text(body: bytes) -> str:
    text = ""
    for data in SSEDecoder().feed(body):
        if data != "[DONE]":
            text += "".join(c["delta"].get("content") or "" for c in json.loads(data)["choices"])
    return text


async def test_fifty_identical_json_requests_make_one_upstream_call(
        gated_upstream: GatedUpstream, make_cached_proxy: CachedProxyFactory) -> None:
    up = gated_upstream
    up.script.content = "one answer for all"
    proxy = await make_cached_proxy(cache_config(up.url))
    answers = await coalesce(proxy, up, CHAT)
    assert len(up.requests) == 1
    assert sorted(how for how, _, _ in answers) == ["coalesced"] * (CLIENTS - 1) + ["miss"]
    assert all(status == 200 for _, status, _ in answers)
    assert len({body for _, _, body in answers}) == 1
    assert json.loads(answers[0][2])["choices"][0]["message"]["content"] == "one answer for all"
    assert proxy.metric("warden_cache_requests_total", {"result": "coalesced"}) == CLIENTS - 1
    assert proxy.metric("warden_cache_bytes_saved_total") == (CLIENTS - 1) * len(answers[0][2])


async def test_fifty_identical_streams_fan_out_from_one_upstream_stream(
        gated_upstream: GatedUpstream, make_cached_proxy: CachedProxyFactory) -> None:
    up = gated_upstream
    up.script.pieces = [f"piece {i} " for i in range(20)]
    up.script.chunk_delay_s = 0.005  # followers receive the stream as it comes, not at its end
    proxy = await make_cached_proxy(cache_config(up.url))
    answers = await coalesce(proxy, up, {**CHAT, "stream": True})
    assert len(up.requests) == 1 and up.completed_streams == 1
    assert sorted(how for how, _, _ in answers) == ["coalesced"] * (CLIENTS - 1) + ["miss"]
    assert len({body for _, _, body in answers}) == 1
    body = answers[0][2]
    assert body.rstrip().endswith(b"data: [DONE]") and sse_text(body) == "".join(up.script.pieces)
    await wait_for(lambda: not cache_of(proxy).flights, "the entry to be stored")
    async with aiohttp.ClientSession() as http, http.post(proxy.url + "/v1/chat/completions",
                                                          json={**CHAT, "stream": True}) as resp:
        assert resp.headers["X-Warden-Cache"] == "hit" and await resp.read() == body


async def test_followers_of_a_stream_cut_mid_way_get_an_error_event(
        gated_upstream: GatedUpstream, make_cached_proxy: CachedProxyFactory) -> None:
    up = gated_upstream
    up.script.cut_stream_after = 2
    proxy = await make_cached_proxy(cache_config(up.url))
    answers = await coalesce(proxy, up, {**CHAT, "stream": True}, clients=5)
    assert len(up.requests) == 1
    for how, status, body in answers:
        assert status == 200 and b"[DONE]" not in body
        if how == "coalesced":
            assert b'"error"' in body and sse_text(body.split(b'data: {"error"')[0]) == "hello0 hello1 "
    assert cache_of(proxy).flights == {} and proxy.metric("warden_cache_entries") == 0


async def test_followers_ask_for_themselves_when_the_leader_left_before_an_answer(
        gated_upstream: GatedUpstream, make_cached_proxy: CachedProxyFactory) -> None:
    up = gated_upstream
    proxy = await make_cached_proxy(cache_config(up.url))
    leader, leader_http = await fire(proxy, CHAT, 1)
    await wait_for(lambda: up.waiting == 1, "the leader to reach the upstream")
    tasks, http = await fire(proxy, CHAT, 3)
    try:
        await wait_for(lambda: followers(proxy) == 3, "every follower to join")
        await leader_http.close()  # the leader's client leaves: its handler is cancelled, its upstream call closed
        await wait_for(lambda: up.waiting == 4, "the followers to ask the upstream themselves")
        up.gate.set()
        answers = await asyncio.gather(*tasks)
    finally:
        await http.close()
        leader[0].cancel()
    assert [(how, status) for how, status, _ in answers] == [("miss", 200)] * 3
    assert all(json.loads(body)["choices"][0]["message"]["content"] == "hello" for _, _, body in answers)
