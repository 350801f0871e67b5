"""Access control through the real proxy: keys to tenants, scopes, and nothing secret leaking out."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import aiohttp
import openai
import pytest

from proxy.governance.keys import digest
from tests.proxy.conftest import ProxyFactory, UpstreamFactory
from tests.proxy.governance.conftest import governed_config, make_key

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}


async def test_missing_forged_and_query_string_keys_are_refused(make_upstream: UpstreamFactory,
                                                                make_proxy: ProxyFactory,
                                                                http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    key = make_key("acme")
    proxy = await make_proxy(governed_config([up.url], [key]))
    url = proxy.url + "/v1/chat/completions"
    cases = [({}, 401, "missing_api_key"),
             ({"Authorization": "Bearer " + key.secret[:-2] + "xx"}, 401, "invalid_api_key"),
             ({"Authorization": "Basic " + key.secret}, 401, "missing_api_key"),
             ({"Authorization": "Bearer wk-" + key.id + "-"}, 401, "invalid_api_key")]
    for headers, status, code in cases:
        async with http.post(url, json=CHAT, headers=headers) as resp:
            assert resp.status == status
            assert (await resp.json())["error"]["code"] == code
    async with http.post(url + "?api_key=" + key.secret, json=CHAT, headers=key.headers) as resp:
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "key_in_url"
    for path in ("/v1/models", "/v1/files"):
        async with http.get(proxy.url + path) as resp:
            assert resp.status == 401
    async with http.get(proxy.url + "/healthz") as resp:
        assert resp.status == 200  # probes need no key
    assert up.requests == []
    async with http.post(url, json=CHAT, headers={"x-api-key": key.secret}) as resp:
        assert resp.status == 200
    assert proxy.metric("warden_auth_failures_total", {"reason": "invalid"}) == 2


async def test_tenant_scopes_models_and_request_sizes(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                                      http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    up.script.models = ["fake-model", "big-model"]
    small, big = make_key("small"), make_key("big")
    tenants = {"small": {"models": ["fake-*"], "max_tokens": 100, "max_context_tokens": 50}}
    proxy = await make_proxy(governed_config([up.url], [small, big], tenants))
    url = proxy.url + "/v1/chat/completions"
    async with http.post(url, json={**CHAT, "model": "big-model"}, headers=small.headers) as resp:
        assert resp.status == 403 and (await resp.json())["error"]["code"] == "model_not_allowed"
    async with http.post(url, json={**CHAT, "model": "big-model"}, headers=big.headers) as resp:
        assert resp.status == 200
    async with http.post(url, json={**CHAT, "max_tokens": 101}, headers=small.headers) as resp:
        body = await resp.json()
        assert resp.status == 400 and body["error"]["code"] == "max_tokens_exceeded"
        assert body["error"]["param"] == "max_tokens"
    long = {**CHAT, "messages": [{"role": "user", "content": "x" * 400}]}
    async with http.post(url, json=long, headers=small.headers) as resp:
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "context_length_exceeded"
    async with http.get(proxy.url + "/v1/models", headers=small.headers) as resp:
        assert [m["id"] for m in (await resp.json())["data"]] == ["fake-model"]
    async with http.get(proxy.url + "/v1/models", headers=big.headers) as resp:
        assert sorted(m["id"] for m in (await resp.json())["data"]) == ["big-model", "fake-model"]
    assert len(up.requests) == 1


async def test_pinned_tenants_get_their_own_group_and_nobody_else_does(make_upstream: UpstreamFactory,
                                                                        make_proxy: ProxyFactory,
                                                                        http: aiohttp.ClientSession) -> None:
    shared, dedicated = await make_upstream("shared"), await make_upstream("dedicated")
    vip, other = make_key("vip"), make_key("other")
    config = governed_config([shared.url], [vip, other], {"vip": {"upstream_group": "vip-pool"}})
    config["upstreams"].insert(0, {**config["upstreams"][0], "name": "vip-pool",
                                   "backends": [{"url": dedicated.url}]})
    proxy = await make_proxy(config)
    for key, served_by in ((vip, "dedicated"), (other, "shared")):
        async with http.post(proxy.url + "/v1/chat/completions", json=CHAT, headers=key.headers) as resp:
            assert resp.status == 200 and resp.headers["X-Served-By"] == served_by


async def test_upstream_credentials_replace_the_clients_and_never_come_back(
        make_upstream: UpstreamFactory, make_proxy: ProxyFactory, http: aiohttp.ClientSession,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    upstream_secret = "sk-upstream-" + os.urandom(8).hex()
    monkeypatch.setenv("TEST_UPSTREAM_KEY", upstream_secret)
    up = await make_upstream()
    key = make_key("acme")
    config = governed_config([up.url], [key])
    config["upstreams"][0]["api_key_env"] = "TEST_UPSTREAM_KEY"
    proxy = await make_proxy(config)
    texts = []
    async with http.post(proxy.url + "/v1/chat/completions", json=CHAT, headers=key.headers) as resp:
        texts += [await resp.text(), str(resp.headers)]
    async with http.post(proxy.url + "/v1/chat/completions", json=CHAT,
                         headers={"Authorization": "Bearer " + key.secret + "x"}) as resp:
        texts += [await resp.text(), str(resp.headers)]
    up.script.status = 500
    async with http.post(proxy.url + "/v1/chat/completions", json=CHAT, headers=key.headers) as resp:
        texts += [await resp.text(), str(resp.headers)]
    async with http.get(proxy.url + "/metrics") as resp:
        texts.append(await resp.text())
    seen = {k.lower(): v for k, v in up.requests[0]["headers"].items()}
    assert seen["authorization"] == "Bearer " + upstream_secret  # the backend gets its own key only
    assert key.secret not in str(up.requests)
    everything = "\n".join(texts) + caplog.text
    assert upstream_secret not in everything
    assert key.secret not in everything and key.secret[len("wk-") + 13:] not in everything


async def test_openai_client_sees_typed_errors(make_upstream: UpstreamFactory, make_proxy: ProxyFactory) -> None:
    up = await make_upstream()
    key = make_key("acme")
    proxy = await make_proxy(governed_config([up.url], [key], {"acme": {"requests_per_minute": 1}}))
    async with openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError):
            await bad.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    async with openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=key.secret, max_retries=0) as good:
        await good.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.RateLimitError) as caught:
            await good.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.response.headers["retry-after"] == "60"
    assert caught.value.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_keys_hash_only_in_config(tmp_path: Path) -> None:
    """The config holds hashes; a key pasted in place of its hash is rejected with the key path."""
    from proxy.settings import ConfigError, build_settings

    key = make_key("acme")
    config = governed_config(["http://127.0.0.1:1"], [key])
    config["governance"]["keys"][0]["sha256"] = key.secret
    with pytest.raises(ConfigError) as caught:
        build_settings(config)
    assert any(p.startswith("governance.keys.0.sha256") for p in caught.value.problems)
    assert digest(key.secret) != key.secret
