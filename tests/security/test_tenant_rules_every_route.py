"""Class 2: every tenant rule holds on every /v1 route, whatever the body's Content-Type.

The passthrough routes (anything under /v1 that Warden does not scan) used to read the model
only from `application/json` bodies, and to route model-less requests to the default group even
when that group was pinned to another tenant; these tests send what a hostile client would.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.proxy.conftest import ProxyFactory, RunningProxy, UpstreamFactory
from tests.proxy.governance.conftest import Key, governed_config, make_key
from tests.support.fake_upstream import FakeUpstream

# Routes Warden relays without scanning: the model still decides who may send them, and where.
PASSTHROUGH = ("/v1/moderations", "/v1/images/generations", "/v1/audio/speech")
NOT_JSON_TYPES = ("text/plain", "application/octet-stream", "application/x-www-form-urlencoded", None)


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


async def post(http: aiohttp.ClientSession, url: str, key: Key, data: bytes,
               content_type: str | None) -> tuple[int, dict[str, Any]]:
    headers = {**key.headers, **({"Content-Type": content_type} if content_type else {})}
    async with http.post(url, data=data, headers=headers, skip_auto_headers=["Content-Type"]) as resp:
        return resp.status, await resp.json(content_type=None)


@pytest.fixture
async def scoped(make_upstream: UpstreamFactory, make_proxy: ProxyFactory) -> tuple[RunningProxy, FakeUpstream,
                                                                                      Key, Key]:
    """`small` may use fake-* models with max_tokens 100; `open` may use anything."""
    up = await make_upstream()
    small, unrestricted = make_key("small"), make_key("open")
    tenants = {"small": {"models": ["fake-*"], "max_tokens": 100}}
    return await make_proxy(governed_config([up.url], [small, unrestricted], tenants)), up, small, unrestricted


@pytest.mark.parametrize("route", PASSTHROUGH)
@pytest.mark.parametrize("content_type", NOT_JSON_TYPES)
async def test_disallowed_model_is_refused_whatever_the_content_type(
        scoped: tuple[RunningProxy, FakeUpstream, Key, Key], http: aiohttp.ClientSession, route: str,
        content_type: str | None) -> None:
    proxy, up, small, _ = scoped
    status, answer = await post(http, proxy.url + route, small, body_of({"model": "big-model", "input": "hi"}),
                                content_type)
    assert status == 403 and answer["error"]["code"] == "model_not_allowed", answer
    status, answer = await post(http, proxy.url + route, small,
                                body_of({"model": "fake-model", "input": "hi", "max_tokens": 5000}), content_type)
    assert status == 400 and answer["error"]["code"] == "max_tokens_exceeded", answer
    assert up.requests == []
    status, answer = await post(http, proxy.url + route, small, body_of({"model": "fake-model", "input": "hi"}),
                                content_type)
    assert status == 200 and len(up.requests) == 1


async def test_a_body_that_cannot_be_judged_is_refused_for_a_tenant_with_an_allow_list(
        scoped: tuple[RunningProxy, FakeUpstream, Key, Key], http: aiohttp.ClientSession) -> None:
    proxy, up, small, unrestricted = scoped
    url = proxy.url + "/v1/moderations"
    for data in (b'{"model": "big-model", "input": "hi",}', b' \n{"model": "big-model"', b'["big-model"]',
                 b'\xef\xbb\xbf{{"model": "big-model"}'):
        status, answer = await post(http, url, small, data, "text/plain")
        assert status == 400 and answer["error"]["code"] == "invalid_json", (data, answer)
    status, answer = await post(http, url, small, b"model=big-model&input=hi", "application/x-www-form-urlencoded")
    assert status == 400 and answer["error"]["code"] == "unreadable_body", answer
    status, answer = await post(http, url, small, body_of({"model": ["big-model"]}), "text/plain")
    assert status == 400 and answer["error"]["param"] == "model", answer
    # UTF-16 JSON is JSON to a Python model server: it is read, not waved through.
    status, answer = await post(http, url, small, json.dumps({"model": "big-model"}).encode("utf-16"), "text/plain")
    assert status == 403 and answer["error"]["code"] == "model_not_allowed", answer
    assert up.requests == []
    # A route that carries no model stays open to a tenant with an allow-list; a tenant without one
    # may send any body.
    async with http.get(proxy.url + "/v1/files", headers=small.headers) as resp:
        assert resp.status == 200
    status, _ = await post(http, url, unrestricted, b"model=big-model&input=hi", "application/x-www-form-urlencoded")
    assert status == 200
    # The model named in the path of /v1/models/{id} is judged like one in a body.
    async with http.get(proxy.url + "/v1/models/big-model", headers=small.headers) as resp:
        assert resp.status == 403 and (await resp.json())["error"]["code"] == "model_not_allowed"
    assert [r["path"] for r in up.requests] == ["/v1/files", "/v1/moderations"]


@pytest.fixture
async def pinned(make_upstream: UpstreamFactory, make_proxy: ProxyFactory) -> tuple[RunningProxy, Key, Key]:
    """`vip` is pinned to `vip-pool` (its own backend); the shared group `main` serves everyone else.

    `vip-pool` comes first and takes every model, so it is also the pool's default group: the group
    a model-less request went to before this fix.
    """
    shared, dedicated = await make_upstream("shared"), await make_upstream("dedicated")
    vip, other = make_key("vip"), make_key("other")
    config = governed_config([shared.url], [vip, other], {"vip": {"upstream_group": "vip-pool"}})
    config["upstreams"].insert(0, {**config["upstreams"][0], "name": "vip-pool",
                                   "backends": [{"url": dedicated.url}]})
    return await make_proxy(config), vip, other


async def served_by(http: aiohttp.ClientSession, method: str, url: str, key: Key, data: bytes | None = None,
                    content_type: str | None = None) -> str:
    headers = {**key.headers, **({"Content-Type": content_type} if content_type else {})}
    async with http.request(method, url, data=data, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["served_by"])


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
async def test_another_tenant_never_reaches_a_pinned_group(pinned: tuple[RunningProxy, Key, Key],
                                                           http: aiohttp.ClientSession, content_type: str) -> None:
    proxy, _, other = pinned
    payload = body_of({"model": "fake-model", "input": "hi"})
    assert await served_by(http, "POST", proxy.url + "/v1/moderations", other, payload, content_type) == "shared"
    assert await served_by(http, "GET", proxy.url + "/v1/files", other) == "shared"
    assert await served_by(http, "POST", proxy.url + "/v1/files", other, b"raw upload", "text/plain") == "shared"
    assert await served_by(http, "DELETE", proxy.url + "/v1/files/f-1", other) == "shared"


async def test_a_pinned_tenant_stays_in_its_group(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                                  http: aiohttp.ClientSession) -> None:
    """Here the shared group is the default and the pinned group serves only `vip-*` by name."""
    shared, dedicated = await make_upstream("shared"), await make_upstream("dedicated")
    vip = make_key("vip")
    config = governed_config([shared.url], [vip], {"vip": {"upstream_group": "vip-pool"}})
    config["upstreams"].append({**config["upstreams"][0], "name": "vip-pool", "models": ["vip-*"],
                                "backends": [{"url": dedicated.url}]})
    proxy = await make_proxy(config)
    for method, path, data in (("GET", "/v1/files", None), ("POST", "/v1/files", b"raw upload"),
                               ("POST", "/v1/moderations", body_of({"input": "hi"})),
                               ("POST", "/v1/moderations", body_of({"model": "fake-model", "input": "hi"}))):
        assert await served_by(http, method, proxy.url + path, vip, data, "text/plain") == "dedicated", path
    assert shared.requests == []
