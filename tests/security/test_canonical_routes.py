"""Canonical routes (issue 22 item 3): a variant of a scanned route never reaches the upstream.

The catch-all `/v1/{tail}` relayed `/v1/chat/completions/`, `/v1/chat//completions`, `;params`,
`%00`, case variants and other methods raw and unscanned; a model server that normalises its paths
then answered them as the scanned route. Requests go over a raw socket: an HTTP client would
normalise the very paths under test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from yarl import URL

from proxy.routes import OPENAI_POST_ROUTES
from tests.proxy.conftest import ProxyFactory, RunningProxy, UpstreamFactory, proxy_config
from tests.support.fake_upstream import FakeUpstream

BODY = json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "prompt": "hi",
                   "input": "hi"}).encode()


def _encode_letter(route: str) -> str:
    """The last letter of the route as %XX (what a server decodes back to the route)."""
    i = max(i for i, c in enumerate(route) if c.isalpha())
    return route[:i] + f"%{ord(route[i]):02X}" + route[i + 1:]


VARIANTS: dict[str, Callable[[str], str]] = {
    "trailing slash": lambda r: r + "/",
    "double slash": lambda r: r.replace("/", "//", 2).replace("//v1", "/v1", 1),
    "leading double slash": lambda r: "/" + r,
    "params": lambda r: r + ";a=1",
    "params in a segment": lambda r: r.replace("/v1/", "/v1;x/", 1),
    "nul": lambda r: r + "%00",
    "control character": lambda r: r + "%0d",
    "space": lambda r: r + "%20",
    "encoded letter": _encode_letter,
    "encoded prefix": lambda r: r.replace("/v1/", "/%761/", 1),
    "encoded slash": lambda r: r[:r.rindex("/")] + "%2F" + r[r.rindex("/") + 1:],
    "upper case": lambda r: r.upper(),
    "mixed case": lambda r: r.title(),
    "upper prefix": lambda r: r.replace("/v1/", "/V1/", 1),
    "dot segment": lambda r: r.replace("/v1/", "/v1/./", 1),
    "double encoded": lambda r: _encode_letter(r).replace("%", "%25"),
    "absolute form": lambda r: "http://upstream.example" + r,
    "fragment": lambda r: r + "#x",
}


@pytest.fixture
async def setup(make_upstream: UpstreamFactory, make_proxy: ProxyFactory) -> tuple[RunningProxy, FakeUpstream]:
    up = await make_upstream()
    return await make_proxy(proxy_config([up.url])), up


async def send(proxy: RunningProxy, method: str, target: str, body: bytes = b"") -> tuple[int, dict[str, str], Any]:
    url = URL(proxy.url)
    assert url.host is not None and url.port is not None
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(payload) if payload else None


def test_the_variants_differ_from_their_route() -> None:
    for route in OPENAI_POST_ROUTES:
        assert all(make(route) != route for make in VARIANTS.values())


@pytest.mark.parametrize("route", OPENAI_POST_ROUTES)
@pytest.mark.parametrize("variant", VARIANTS)
async def test_a_variant_of_a_scanned_route_is_refused(setup: tuple[RunningProxy, FakeUpstream], route: str,
                                                       variant: str) -> None:
    proxy, up = setup
    status, _, answer = await send(proxy, "POST", VARIANTS[variant](route), BODY)
    assert status == 400, answer
    assert answer["error"]["type"] == "invalid_request_error"
    assert answer["error"].get("code", "invalid_path") == "invalid_path"  # Anthropic's shape (Messages) has none
    assert route in answer["error"]["message"]
    assert up.requests == []


@pytest.mark.parametrize("route", OPENAI_POST_ROUTES)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_another_method_on_a_scanned_route_is_405(setup: tuple[RunningProxy, FakeUpstream], route: str,
                                                        method: str) -> None:
    proxy, up = setup
    status, headers, answer = await send(proxy, method, route, BODY)
    assert status == 405 and headers["allow"] == "POST", answer
    assert answer["error"].get("code", "method_not_allowed") == "method_not_allowed"
    assert up.requests == []


async def test_canonical_routes_and_other_v1_routes_still_pass(setup: tuple[RunningProxy, FakeUpstream]) -> None:
    proxy, up = setup
    status, _, answer = await send(proxy, "POST", "/v1/chat/completions?x=1", BODY)
    assert status == 200, answer
    status, _, answer = await send(proxy, "DELETE", "/v1/files/f-1?purpose=x")
    assert status == 200 and answer["echo"] == "/v1/files/f-1?purpose=x"
    for variant in ("/v1/models/", "/v1//models", "/v1/Models"):  # what /v1/models filters must not leak raw
        status, _, answer = await send(proxy, "GET", variant)
        assert status == 400 and "/v1/models" in answer["error"]["message"], variant
    assert [r["path"] for r in up.requests] == ["/v1/chat/completions?x=1", "/v1/files/f-1?purpose=x"]
