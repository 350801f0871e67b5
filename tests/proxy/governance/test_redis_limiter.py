"""Limits shared by replicas through a real redis-server: no over-admission across them either."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp

from tests.proxy.conftest import ProxyFactory, RunningProxy, UpstreamFactory
from tests.proxy.governance.conftest import Key, governed_config, make_key
from tests.support.llama import free_port

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}


def shared(url: str, keys: list[Key], redis_url: str, prefix: str, tenants: dict[str, Any],
           **extra: Any) -> dict[str, Any]:
    return governed_config([url], keys, tenants, limiter="redis", redis_url=redis_url, redis_prefix=prefix, **extra)


async def post(http: aiohttp.ClientSession, proxy: RunningProxy, key: Key, **extra: Any) -> int:
    async with http.post(proxy.url + "/v1/chat/completions", json={**CHAT, **extra}, headers=key.headers) as resp:
        await resp.read()
        return resp.status


async def settled(*proxies: RunningProxy) -> None:
    """Settling goes to Redis after the answer: wait until every replica has done it."""
    for _ in range(500):
        if all(p.state.governance is not None and not len(p.state.governance.background) for p in proxies):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("settles never finished")


async def test_two_replicas_admit_exactly_the_limit_between_them(make_upstream: UpstreamFactory,
                                                                 make_proxy: ProxyFactory,
                                                                 http: aiohttp.ClientSession, redis_url: str) -> None:
    up = await make_upstream()
    up.script.hang_s = 0.05
    key = make_key("acme")
    config = shared(up.url, [key], redis_url, f"t-{uuid.uuid4().hex}:", {"acme": {"requests_per_minute": 10}})
    a, b = await make_proxy(config), await make_proxy(config)
    statuses = await asyncio.gather(*(post(http, (a, b)[i % 2], key) for i in range(50)))
    assert statuses.count(200) == 10 and statuses.count(429) == 40


async def test_concurrency_slots_are_shared_and_come_back(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                                          http: aiohttp.ClientSession, redis_url: str) -> None:
    up = await make_upstream()
    up.script.hang_s = 0.4
    key = make_key("acme")
    config = shared(up.url, [key], redis_url, f"t-{uuid.uuid4().hex}:", {"acme": {"max_concurrency": 3}})
    a, b = await make_proxy(config), await make_proxy(config)
    statuses = await asyncio.gather(*(post(http, (a, b)[i % 2], key) for i in range(20)))
    assert statuses.count(200) == 3 and statuses.count(429) == 17
    await settled(a, b)
    up.script.hang_s = 0
    assert list(await asyncio.gather(post(http, a, key), post(http, b, key), post(http, a, key))) == [200, 200, 200]


async def test_reported_tokens_are_owed_across_replicas(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                                        http: aiohttp.ClientSession, redis_url: str) -> None:
    up = await make_upstream()  # reports 2 tokens per answer
    key = make_key("acme")
    config = shared(up.url, [key], redis_url, f"t-{uuid.uuid4().hex}:", {"acme": {"tokens_per_minute": 5}})
    a, b = await make_proxy(config), await make_proxy(config)
    statuses = []
    for proxy in (a, b, a, b):
        statuses.append(await post(http, proxy, key))
        await settled(a, b)
    assert statuses == [200, 200, 200, 429]


async def test_redis_away_fails_open_or_closed_as_configured(make_upstream: UpstreamFactory,
                                                             make_proxy: ProxyFactory,
                                                             http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    key = make_key("acme")
    gone = f"redis://127.0.0.1:{free_port()}/0"
    tenants = {"acme": {"requests_per_minute": 1}}
    open_proxy = await make_proxy(shared(up.url, [key], gone, "x:", tenants))
    assert [await post(http, open_proxy, key) for _ in range(3)] == [200, 200, 200]
    assert open_proxy.metric("warden_limiter_errors_total", {"op": "admit"}) == 3
    closed = await make_proxy(shared(up.url, [key], gone, "x:", tenants, redis_fail_open=False))
    async with http.post(closed.url + "/v1/chat/completions", json=CHAT, headers=key.headers) as resp:
        assert resp.status == 429 and (await resp.json())["error"]["code"] == "limiter_unavailable"
