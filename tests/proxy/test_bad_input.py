"""Hostile and broken requests get a clear 4xx OpenAI-style error, and the proxy keeps serving."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from yarl import URL

from tests.proxy.conftest import ProxyFactory, RunningProxy, UpstreamFactory, proxy_config

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def proxy(make_upstream: UpstreamFactory, make_proxy: ProxyFactory) -> RunningProxy:
    up = await make_upstream()
    config = proxy_config([up.url], models=["fake-*"])
    config["limits"] = {"max_body_bytes": 2048}
    config["timeouts"] = {"body_read_s": 0.5}
    return await make_proxy(config)


async def post(http: aiohttp.ClientSession, proxy: RunningProxy, data: bytes,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json", **(headers or {})}
    async with http.post(proxy.url + "/v1/chat/completions", data=data, headers=headers) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


async def still_serving(http: aiohttp.ClientSession, proxy: RunningProxy) -> None:
    async with http.post(proxy.url + "/v1/chat/completions", json=CHAT) as resp:
        assert resp.status == 200


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        (b"{not json", 400, "invalid_json", None),
        (b"[1, 2]", 400, "invalid_json", None),
        (b'{"messages": []}', 400, "missing_model", "model"),
        (b'{"model": 5, "messages": []}', 400, "invalid_type", "model"),
        (b'{"model": "  ", "messages": []}', 400, "invalid_type", "model"),
        (b'{"model": "fake-model", "stream": "yes"}', 400, "invalid_type", "stream"),
        (b'{"model": "fake-model", "messages": "hi"}', 400, "invalid_type", "messages"),
        (b'{"model": "gpt-unknown", "messages": []}', 404, "model_not_found", "model"),
        (b'{"model": "fake-model", "messages": [{"content": "\xff\xfe"}]}', 400, "invalid_encoding", None),
    ],
)
async def test_malformed_bodies(proxy: RunningProxy, http: aiohttp.ClientSession, body: bytes, status: int,
                                code: str, param: str | None) -> None:
    got_status, payload = await post(http, proxy, body)
    assert got_status == status
    error = payload["error"]
    assert error["code"] == code and error["param"] == param and error["message"]
    assert error["type"] == "invalid_request_error"
    await still_serving(http, proxy)


async def test_body_over_the_cap(proxy: RunningProxy, http: aiohttp.ClientSession) -> None:
    big = b'{"model": "fake-model", "pad": "' + b"x" * 4096 + b'"}'
    status, payload = await post(http, proxy, big)
    assert status == 413 and payload["error"]["code"] == "payload_too_large"

    async def chunked() -> Any:
        for _ in range(8):
            yield b"x" * 1024

    async with http.post(proxy.url + "/v1/chat/completions", data=chunked()) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "payload_too_large"
    await still_serving(http, proxy)


async def test_slow_client_times_out_without_stalling_others(proxy: RunningProxy,
                                                             http: aiohttp.ClientSession) -> None:
    url = URL(proxy.url)
    assert url.host is not None and url.port is not None
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{\"model\": ")
    await writer.drain()
    await still_serving(http, proxy)  # served while the slow one dribbles
    head = await asyncio.wait_for(reader.read(4096), 3)
    writer.close()
    assert head.startswith(b"HTTP/1.1 408")
    assert b'"request_timeout"' in head


async def test_request_id_injection_is_refused(proxy: RunningProxy, http: aiohttp.ClientSession) -> None:
    for bad in ("abc def", "x" * 200, "id<script>", "a;Set-Cookie=x"):
        status, payload = await post(http, proxy, b"{}", headers={"X-Request-Id": bad})
        assert status == 400 and payload["error"]["code"] == "invalid_request_id"
    await still_serving(http, proxy)


async def test_raw_header_injection_is_rejected_and_nothing_reaches_upstream(
    make_upstream: UpstreamFactory, make_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    up = await make_upstream()
    proxy = await make_proxy(proxy_config([up.url]))
    url = URL(proxy.url)
    assert url.host is not None and url.port is not None
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Evil: a\rInjected: 1\r\n"
                 b"Content-Length: 2\r\n\r\n{}")
    await writer.drain()
    head = await asyncio.wait_for(reader.read(4096), 3)
    writer.close()
    # Framing errors are refused by aiohttp's HTTP parser before any route runs: a plain-text 400
    # naming the fault, and the connection closed (documented in docs/api.md).
    assert head.startswith(b"HTTP/1.0 400") and b"Missing expected LF" in head
    assert up.requests == []
    await still_serving(http, proxy)


async def test_unknown_route_and_method_get_json_errors(proxy: RunningProxy, http: aiohttp.ClientSession) -> None:
    async with http.get(proxy.url + "/nope") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"
    async with http.put(proxy.url + "/healthz") as resp:
        assert resp.status == 405
        assert (await resp.json())["error"]["code"] == "method_not_allowed"
