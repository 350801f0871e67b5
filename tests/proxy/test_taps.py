"""Observers see each answer as the client got it, once, whatever path the relay took."""

from __future__ import annotations

from typing import Any

import aiohttp

from proxy.exchange import Exchange
from proxy.taps import Capture
from proxy.wire.streams import output_text
from tests.proxy.conftest import ProxyFactory, RunningProxy, UpstreamFactory, proxy_config

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}


class Watch:
    def __init__(self) -> None:
        self.captures: list[tuple[Exchange, dict[str, Any], Capture]] = []
        self.ends = 0

    def __call__(self, exchange: Exchange, payload: dict[str, Any]) -> Capture:
        capture = Capture(on_end=lambda _: self._ended())
        self.captures.append((exchange, payload, capture))
        return capture

    def _ended(self) -> None:
        self.ends += 1


def watched(proxy: RunningProxy) -> Watch:
    watch = Watch()
    proxy.state.observers.append(watch)
    return watch


async def test_json_and_sse_answers_are_captured_as_text(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                                         http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    up.script.pieces = ["Hel", "lo wor", "ld"]
    proxy = await make_proxy(proxy_config([up.url]))
    watch = watched(proxy)
    async with http.post(proxy.url + "/v1/chat/completions", json=CHAT) as resp:
        await resp.read()
    async with http.post(proxy.url + "/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
        await resp.read()
    assert watch.ends == 2
    (ex1, payload1, plain), (_, _, streamed) = watch.captures
    assert payload1 == CHAT and ex1.model == "fake-model"
    assert plain.complete and plain.status == 200 and plain.text() == "Hello world"
    assert streamed.complete and streamed.content_type == "text/event-stream"
    assert streamed.text() == "Hello world"


async def test_embeddings_are_not_observed(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                           http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    proxy = await make_proxy(proxy_config([up.url]))
    watch = watched(proxy)
    async with http.post(proxy.url + "/v1/embeddings", json={"model": "fake-model", "input": "x"}) as resp:
        assert resp.status == 200
    assert watch.captures == []


async def test_a_retried_attempt_leaves_only_the_answer_sent(make_upstream: UpstreamFactory,
                                                             make_proxy: ProxyFactory,
                                                             http: aiohttp.ClientSession) -> None:
    bad, good = await make_upstream("bad"), await make_upstream("good")
    bad.script.status = 503
    proxy = await make_proxy(proxy_config([bad.url, good.url], balancer="round_robin"))
    watch = watched(proxy)
    for _ in range(2):
        async with http.post(proxy.url + "/v1/chat/completions", json=CHAT) as resp:
            assert resp.status == 200
    assert watch.ends == 2
    assert all(c.status == 200 and c.text() == "hello" and c.complete for _, _, c in watch.captures)


async def test_no_answer_still_ends_once_incomplete(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                                   http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    up.script.stream_chunks = 4
    up.script.cut_stream_after = 2
    proxy = await make_proxy(proxy_config([up.url]))
    watch = watched(proxy)
    async with http.post(proxy.url + "/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
        await resp.read()
    await up.stop()
    async with http.post(proxy.url + "/v1/chat/completions", json=CHAT) as resp:
        assert resp.status >= 500
    assert watch.ends == 2
    cut, refused = (c for _, _, c in watch.captures)
    assert not cut.complete and cut.status == 200 and cut.text() == "hello0 hello1 "
    assert not refused.complete and refused.status == 0 and refused.text() == ""


def test_capture_stops_at_its_byte_cap_and_says_so() -> None:
    capture = Capture(max_bytes=10)
    capture.start(200, "application/json")
    capture.client(b"0123456789")
    capture.client(b"x")
    assert capture.truncated and capture.body == b"0123456789"
    capture.start(200, "application/json")
    assert not capture.truncated and capture.body == b""


def test_output_text_reads_choices_and_ignores_junk() -> None:
    body = b'{"choices":[{"index":0,"message":{"content":"a"}},{"index":1,"message":{"content":"b"}}]}'
    assert output_text("application/json", body) == "a\nb"
    sse = (b'data: {"choices":[{"index":1,"delta":{"content":"y"}}]}\n\n'
           b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\ndata: [DONE]\n\n')
    assert output_text("text/event-stream", sse) == "x\ny"
    assert output_text("application/json", b"not json") == ""
