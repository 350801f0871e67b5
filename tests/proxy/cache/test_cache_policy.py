"""Policy on cached and coalesced answers: the requester's own rules apply, on every path."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from tests.proxy.cache.conftest import TENANT, CachedProxyFactory, GatedUpstream, cache_config, wait_for
from tests.proxy.cache.test_coalescing import followers, sse_text
from tests.proxy.conftest import RunningProxy, UpstreamFactory

KEY = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example key id
ANSWER = f"The key is {KEY}, and that is all there is to say about it today."
REDACTED = ANSWER.replace(KEY, "<AWS_ACCESS_KEY>")
CHAT: dict[str, Any] = {"model": "fake-model", "messages": [{"role": "user", "content": "key?"}], "temperature": 0}


def strict_config(url: str, action: str, **cache: Any) -> dict[str, Any]:
    """Tenant `strict` has a rule on secrets; everyone else has none (their findings are allowed)."""
    config = cache_config(url, shared_across_tenants=True, **cache)
    config["detectors"] = [{"name": "secrets", "type": "patterns"}]
    config["policy"] = {"stream_window_chars": 16,
                        "rules": [{"detector": "secrets", "action": action, "tenants": ["strict"]}]}
    return config


async def ask(http: aiohttp.ClientSession, proxy: RunningProxy, tenant: str,
              body: dict[str, Any] = CHAT) -> tuple[str, str, str | None]:
    """The X-Warden-Cache answer, the output text and the (last) finish reason."""
    async with http.post(proxy.url + "/v1/chat/completions", json=body, headers={TENANT: tenant}) as resp:
        assert resp.status == 200, await resp.text()
        raw = await resp.read()
        how = resp.headers["X-Warden-Cache"]
    if body.get("stream"):
        assert raw.rstrip().endswith(b"data: [DONE]")
        reasons = [c.get("finish_reason") for d in _events(raw) for c in d["choices"]]
        return how, sse_text(raw), next((r for r in reversed(reasons) if r), None)
    choice = json.loads(raw)["choices"][0]
    return how, choice["message"]["content"], choice["finish_reason"]


def _events(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: {")]


async def test_a_stricter_tenant_gets_the_redacted_form_of_a_cached_answer(
        make_upstream: UpstreamFactory, make_cached_proxy: CachedProxyFactory, http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    up.script.pieces = [ANSWER[i:i + 5] for i in range(0, len(ANSWER), 5)]
    proxy = await make_cached_proxy(strict_config(up.url, "redact"))
    for body in (CHAT, {**CHAT, "stream": True}):
        assert await ask(http, proxy, "lax", body) == ("miss", ANSWER, "stop")
        assert await ask(http, proxy, "strict", body) == ("hit", REDACTED, "stop")
        assert await ask(http, proxy, "lax", body) == ("hit", ANSWER, "stop")  # the raw answer was stored
    assert len(up.requests) == 2


async def test_a_stricter_tenant_gets_the_blocked_form_of_a_cached_answer(
        make_upstream: UpstreamFactory, make_cached_proxy: CachedProxyFactory, http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    up.script.pieces = [ANSWER[i:i + 5] for i in range(0, len(ANSWER), 5)]
    proxy = await make_cached_proxy(strict_config(up.url, "block"))
    assert await ask(http, proxy, "lax") == ("miss", ANSWER, "stop")
    assert await ask(http, proxy, "strict") == ("hit", "", "content_filter")
    stream = {**CHAT, "stream": True}
    how, cut, reason = await ask(http, proxy, "strict", stream)
    assert (how, reason) == ("miss", "content_filter") and KEY not in cut and ANSWER.startswith(cut)
    assert await ask(http, proxy, "lax", stream) == ("miss", ANSWER, "stop")  # a blocked stream was cut: not stored
    assert await ask(http, proxy, "strict", stream) == ("hit", cut, "content_filter")
    assert len(up.requests) == 3


async def test_coalesced_followers_each_get_their_own_policy(
        gated_upstream: GatedUpstream, make_cached_proxy: CachedProxyFactory) -> None:
    up = gated_upstream
    up.script.pieces = [ANSWER[i:i + 3] for i in range(0, len(ANSWER), 3)]
    up.script.chunk_delay_s = 0.002
    proxy = await make_cached_proxy(strict_config(up.url, "redact"))
    stream = {**CHAT, "stream": True}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        leader = asyncio.create_task(ask(http, proxy, "lax", stream))
        await wait_for(lambda: up.waiting == 1, "the leader to reach the upstream")
        tenants = ["strict", "lax"] * 10
        rest = [asyncio.create_task(ask(http, proxy, t, stream)) for t in tenants]
        await wait_for(lambda: followers(proxy) == len(tenants), "every follower to join")
        up.gate.set()
        answers = await asyncio.gather(leader, *rest)
    assert len(up.requests) == 1
    assert answers[0] == ("miss", ANSWER, "stop")
    for tenant, answer in zip(tenants, answers[1:], strict=True):
        assert answer == ("coalesced", REDACTED if tenant == "strict" else ANSWER, "stop")


async def test_request_policy_runs_before_the_cache_is_asked(
        make_upstream: UpstreamFactory, make_cached_proxy: CachedProxyFactory, http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    config = strict_config(up.url, "block")
    proxy = await make_cached_proxy(config)
    leaky = {**CHAT, "messages": [{"role": "user", "content": f"is {KEY} a key?"}]}
    assert (await ask(http, proxy, "lax", leaky))[0] == "miss"
    async with http.post(proxy.url + "/v1/chat/completions", json=leaky, headers={TENANT: "strict"}) as resp:
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "content_policy_violation"
        assert "X-Warden-Cache" not in resp.headers
    assert len(up.requests) == 1
