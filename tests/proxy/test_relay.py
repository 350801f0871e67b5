"""Relay behaviour against scripted upstreams: faithful forwarding, streaming, retries, disconnects."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp

from tests.proxy.conftest import ProxyFactory, UpstreamFactory, proxy_config
from tests.support.llama import free_port

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}


async def test_chat_is_relayed_with_request_id_and_without_hop_by_hop_headers(make_upstream: UpstreamFactory,
                                                                             make_proxy: ProxyFactory,
                                                                             http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    proxy = await make_proxy(proxy_config([up.url]))
    headers = {"X-Request-Id": "abc-123", "Authorization": "Bearer k", "Connection": "keep-alive, X-Secret",
               "X-Secret": "hop", "Keep-Alive": "timeout=5", "X-Custom": "kept"}
    async with http.post(proxy.url + "/v1/chat/completions", json=CHAT, headers=headers) as resp:
        assert resp.status == 200
        rid = resp.headers["X-Request-Id"]  # Warden's own id: a client's could be another tenant's (issue 23)
        assert re.fullmatch(r"[0-9a-f]{32}", rid) and rid != "abc-123"
        assert resp.headers["X-Served-By"] == "fake"
        body = await resp.json()
    assert body["choices"][0]["message"]["content"] == "hello"
    seen = {k.lower(): v for k, v in up.requests[-1]["headers"].items()}
    assert seen["x-request-id"] == rid
    assert seen["authorization"] == "Bearer k"
    assert seen["x-custom"] == "kept"
    assert "x-secret" not in seen and "keep-alive" not in seen
    assert json.loads(up.requests[-1]["body"]) == CHAT


async def test_request_id_is_assigned_when_absent(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                                  http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    proxy = await make_proxy(proxy_config([up.url]))
    async with http.post(proxy.url + "/v1/chat/completions", json=CHAT) as resp:
        rid = resp.headers["X-Request-Id"]
    assert len(rid) == 32
    assert {k.lower(): v for k, v in up.requests[-1]["headers"].items()}["x-request-id"] == rid
    async with http.post(proxy.url + "/v1/chat/completions", json=CHAT) as resp:
        assert resp.headers["X-Request-Id"] != rid


async def test_stream_is_relayed_chunk_by_chunk(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                                http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    up.script.stream_chunks = 3
    up.script.chunk_delay_s = 0.3
    proxy = await make_proxy(proxy_config([up.url]))
    loop = asyncio.get_running_loop()
    arrivals: list[float] = []
    async with http.post(proxy.url + "/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
        assert resp.content_type == "text/event-stream"
        async for line in resp.content:
            if line.startswith(b"data: "):
                arrivals.append(loop.time())
    assert len(arrivals) == 4  # three chunks and [DONE]
    # Had the proxy buffered the stream, every line would arrive at the same moment.
    assert arrivals[1] - arrivals[0] > 0.2


async def test_other_v1_routes_pass_through(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                            http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    proxy = await make_proxy(proxy_config([up.url]))
    async with http.delete(proxy.url + "/v1/files/f-1?purpose=x") as resp:
        assert resp.status == 200
        assert await resp.json() == {"echo": "/v1/files/f-1?purpose=x", "method": "DELETE", "served_by": "fake"}


async def test_models_are_merged_across_groups(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                               http: aiohttp.ClientSession) -> None:
    a, b = await make_upstream("a"), await make_upstream("b")
    a.script.models = ["llama-small"]
    b.script.models = ["qwen-big", "llama-small"]
    config = proxy_config([a.url])
    config["upstreams"][0].update(name="llama", models=["llama-*"])
    config["upstreams"].append({"name": "rest", "models": ["*"], "backends": [{"url": b.url}]})
    proxy = await make_proxy(config)
    async with http.get(proxy.url + "/v1/models") as resp:
        data = (await resp.json())["data"]
    assert sorted(m["id"] for m in data) == ["llama-small", "qwen-big"]
    assert {m["id"]: m["owned_by"] for m in data}["llama-small"] == "a"


async def test_refused_backend_is_retried_once_elsewhere_and_ejected(make_upstream: UpstreamFactory,
                                                                     make_proxy: ProxyFactory,
                                                                     http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    dead = f"http://127.0.0.1:{free_port()}"
    proxy = await make_proxy(proxy_config([dead, up.url], balancer="round_robin",
                                          health={"interval_s": 30, "eject_base_s": 30}))
    statuses = []
    for _ in range(4):
        async with http.post(proxy.url + "/v1/chat/completions", json=CHAT) as resp:
            statuses.append(resp.status)
    assert statuses == [200, 200, 200, 200]
    assert proxy.metric("warden_upstream_ejections_total", {"group": "main", "backend": dead}) == 1
    assert proxy.metric("warden_upstream_retries_total", {"group": "main"}) <= 1


async def test_503_is_retried_on_the_other_backend(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                                   http: aiohttp.ClientSession) -> None:
    bad, good = await make_upstream("bad"), await make_upstream("good")
    bad.script.status = 503
    proxy = await make_proxy(proxy_config([bad.url, good.url], balancer="round_robin",
                                          health={"interval_s": 30}))
    for _ in range(3):
        async with http.post(proxy.url + "/v1/chat/completions", json=CHAT) as resp:
            assert resp.status == 200
            assert resp.headers["X-Served-By"] == "good"


async def test_no_retry_left_gives_openai_error(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                                http: aiohttp.ClientSession) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    proxy = await make_proxy(proxy_config([dead], health={"interval_s": 30}))
    async with http.post(proxy.url + "/v1/chat/completions", json=CHAT) as resp:
        assert resp.status in (502, 503)
        error = (await resp.json())["error"]
    assert error["type"] == "server_error" and error["message"]
    if resp.status == 503:
        assert int(resp.headers["Retry-After"]) >= 1


async def test_stream_cut_mid_way_ends_with_sse_error_event(make_upstream: UpstreamFactory,
                                                            make_proxy: ProxyFactory,
                                                            http: aiohttp.ClientSession) -> None:
    up, spare = await make_upstream("cut"), await make_upstream("spare")
    up.script.cut_stream_after = 2
    proxy = await make_proxy(proxy_config([up.url, spare.url], balancer="round_robin", health={"interval_s": 30}))
    async with http.post(proxy.url + "/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
        assert resp.headers["X-Served-By"] == "cut"
        events = [line async for line in resp.content if line.startswith(b"data: ")]
    assert len(events) == 3
    last = json.loads(events[-1][len(b"data: "):])
    assert last["error"]["code"] == "upstream_error"
    assert spare.requests == []  # bytes had been sent: never retried


async def test_client_disconnect_cancels_upstream(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                                  http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    up.script.stream_chunks = 50
    up.script.chunk_delay_s = 0.05
    proxy = await make_proxy(proxy_config([up.url]))
    resp = await http.post(proxy.url + "/v1/chat/completions", json={**CHAT, "stream": True})
    await resp.content.readline()
    resp.close()
    for _ in range(100):
        if proxy.state.pool.groups[0].backends[0].outstanding == 0 and up.cancelled:
            break
        await asyncio.sleep(0.02)
    assert up.cancelled == 1
    assert up.completed_streams == 0
    assert proxy.state.pool.groups[0].backends[0].outstanding == 0
