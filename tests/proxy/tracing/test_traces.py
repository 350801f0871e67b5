"""Traces at a real OTLP/HTTP receiver: the span tree of a request, `traceparent` in and out, losses counted."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.proxy.conftest import ProxyFactory, UpstreamFactory, proxy_config
from tests.proxy.tracing.receiver import OtlpReceiver, Received
from tests.support.llama import free_port

CANARY = "zebra-canary-7731"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    collector = await OtlpReceiver().start()
    yield collector
    await collector.stop()


@pytest.fixture(autouse=True)
def _no_ambient_otel(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own OTEL_* variables must not turn tracing on (or off) under these tests."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


def traced_config(backends: list[str], endpoint: str, **group: Any) -> dict[str, Any]:
    config = proxy_config(backends, **group)
    config["telemetry"]["otel"] = {"endpoint": endpoint, "sample_ratio": 1.0, "service_name": "warden-test"}
    return config


def by_name(spans: list[Received], name: str) -> list[Received]:
    return [s for s in spans if s.name == name]


async def test_streamed_chat_with_a_retry_and_a_policy_block(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                                             receiver: OtlpReceiver,
                                                             http: aiohttp.ClientSession) -> None:
    bad, good = await make_upstream("bad"), await make_upstream("good")
    bad.script.status = 503  # the first attempt fails before any byte: retried on the other backend
    good.script.pieces = ["Here is ", "the marker ", f"{CANARY} ", "and more ", "words to ", "close the window."]
    config = traced_config([bad.url, good.url], receiver.url, balancer="round_robin", health={"interval_s": 30})
    config["detectors"] = [{"name": "secrets", "type": "patterns", "canaries": [CANARY]}]
    config["policy"] = {"mode": "enforce", "stream_window_chars": 32, "rules": [{"detector": "secrets",
                                                                                "action": "block"}]}
    proxy = await make_proxy(config)
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "tell me a secret"}]}
    retried: list[Received] = []
    for trace_id in (CALLER_TRACE, "0af7651916cd43dd8448eb211c80319c"):  # round robin: one of two meets `bad` first
        bad.requests.clear()
        good.requests.clear()
        headers = {"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"}
        async with http.post(proxy.url + "/v1/chat/completions", json=body, headers=headers) as resp:
            assert resp.status == 200
            text = (await resp.read()).decode()
        assert CANARY not in text  # policy stopped the stream before the canary went out
        if bad.requests:
            retried = await receiver.wait_for(trace_id, "POST /v1/chat/completions", "chat m",
                                              "warden.scan request", "warden.scan response")
            break
    assert retried, "no request met the failing backend first"
    spans = retried
    server = by_name(spans, "POST /v1/chat/completions")
    assert len(server) == 1
    root = server[0]
    assert root.kind == "SPAN_KIND_SERVER"
    assert root.parent_id == CALLER_SPAN  # continues the caller's trace
    assert root.resource["service.name"] == "warden-test"
    a = root.attributes
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "m"
    assert a["warden.tenant"] == "anonymous" and a["warden.verdict"] == "block"
    assert a["http.response.status_code"] == 200 and a["http.route"] == "/v1/chat/completions"
    assert a["gen_ai.response.time_to_first_chunk"] > 0
    assert a["warden.backend"] == good.url

    attempts = sorted(by_name(spans, "chat m"), key=lambda s: s.attributes["warden.attempt"])
    assert [s.kind for s in attempts] == ["SPAN_KIND_CLIENT"] * 2
    assert all(s.parent_id == root.span_id for s in attempts)
    first, second = attempts
    assert first.attributes["warden.backend"] == bad.url and first.attributes["http.response.status_code"] == 503
    assert first.status == "STATUS_CODE_ERROR" and "503" in first.attributes["error.type"]
    assert second.attributes["warden.backend"] == good.url and second.attributes["http.response.status_code"] == 200
    assert second.attributes["gen_ai.response.model"] == "m"
    assert second.attributes["server.address"] == "127.0.0.1" and second.attributes["warden.upstream.group"] == "main"

    # Each backend continued the trace under its own attempt's span.
    sent = [r["headers"].get("traceparent") for r in bad.requests + good.requests]
    assert sent == [f"00-{root.trace_id}-{first.span_id}-01", f"00-{root.trace_id}-{second.span_id}-01"]

    scans = by_name(spans, "warden.scan request") + by_name(spans, "warden.scan response")
    assert all(s.parent_id == root.span_id for s in scans)
    assert by_name(spans, "warden.scan request")[0].attributes["warden.verdict"] == "allow"
    blocked = [s for s in by_name(spans, "warden.scan response") if s.attributes.get("warden.verdict") == "block"]
    assert len(blocked) == 1
    events = blocked[0].events
    assert [name for name, _ in events] == ["warden.detection"]
    assert events[0][1]["warden.detector"] == "secrets" and events[0][1]["warden.action"] == "block"
    assert 0 < events[0][1]["warden.score"] <= 1
    # No prompt or answer text anywhere on the spans.
    everything = json.dumps([(s.attributes, s.events) for s in spans])
    assert CANARY not in everything and "tell me a secret" not in everything


async def test_an_unsampled_caller_is_continued_but_not_exported(make_upstream: UpstreamFactory,
                                                                make_proxy: ProxyFactory, receiver: OtlpReceiver,
                                                                http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    proxy = await make_proxy(traced_config([up.url], receiver.url))
    body = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(proxy.url + "/v1/chat/completions", json=body,
                         headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-00"}) as resp:
        assert resp.status == 200
    forwarded = up.requests[-1]["headers"]["traceparent"]
    version, trace_id, parent, flags = forwarded.split("-")
    assert (version, trace_id, flags) == ("00", CALLER_TRACE, "00") and parent != CALLER_SPAN
    # A sampled request with no caller: a new trace, the whole answer's usage and finish reason on it.
    async with http.post(proxy.url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200
    trace_id = up.requests[-1]["headers"]["traceparent"].split("-")[1]
    spans = await receiver.wait_for(trace_id, "POST /v1/chat/completions", "chat m1")
    root = by_name(spans, "POST /v1/chat/completions")[0]
    assert root.parent_id == ""
    assert root.attributes["gen_ai.usage.input_tokens"] == 1 and root.attributes["gen_ai.usage.output_tokens"] == 1
    assert root.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert all(s.trace_id != CALLER_TRACE for s in receiver.spans)  # the unsampled one never left
    assert receiver.content_types == {"application/x-protobuf"}


async def test_spans_lost_to_an_absent_collector_are_counted(make_upstream: UpstreamFactory,
                                                            make_proxy: ProxyFactory, http: aiohttp.ClientSession,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0.5")  # the exporter's retries give up sooner
    up = await make_upstream()
    proxy = await make_proxy(traced_config([up.url], f"http://127.0.0.1:{free_port()}"))
    async with http.post(proxy.url + "/v1/chat/completions", json={"model": "m1", "messages": []}) as resp:
        assert resp.status == 200  # the request never waits on the collector
    dropped = {"reason": "export_failed"}
    for _ in range(100):
        if proxy.metric("warden_trace_spans_dropped_total", dropped) >= 2:
            break
        await asyncio.sleep(0.1)
    assert proxy.metric("warden_trace_spans_dropped_total", dropped) >= 2  # the server and upstream spans
    assert proxy.metric("warden_trace_spans_exported_total") == 0


async def test_standard_variables_turn_tracing_on(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                                  receiver: OtlpReceiver, http: aiohttp.ClientSession,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    up = await make_upstream()
    proxy = await make_proxy(proxy_config([up.url]))
    async with http.post(proxy.url + "/v1/embeddings", json={"model": "e", "input": "x"}) as resp:
        assert resp.status == 200
    trace_id = up.requests[-1]["headers"]["traceparent"].split("-")[1]
    spans = await receiver.wait_for(trace_id, "POST /v1/embeddings", "embeddings e")
    assert {s.name for s in spans} == {"POST /v1/embeddings", "embeddings e"}
    assert spans[0].resource["service.name"] == "from-env"


async def test_tracing_off_sends_the_callers_traceparent_untouched(make_upstream: UpstreamFactory,
                                                                    make_proxy: ProxyFactory,
                                                                    http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    proxy = await make_proxy(proxy_config([up.url]))
    assert proxy.state.tracing is None
    header = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    async with http.post(proxy.url + "/v1/chat/completions", json={"model": "m1", "messages": []},
                         headers={"traceparent": header}) as resp:
        assert resp.status == 200
    assert up.requests[-1]["headers"]["traceparent"] == header


async def test_the_review_draw_is_a_span_of_the_request(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                                        receiver: OtlpReceiver, http: aiohttp.ClientSession,
                                                        tmp_path: Any) -> None:
    up = await make_upstream()
    config = traced_config([up.url], receiver.url)
    config["review"] = {"enabled": True, "db_path": str(tmp_path / "review.sqlite3"), "rate": 1.0,
                        "double_review_share": 0.0, "reviewers": [{"name": "ann", "token_sha256": "0" * 64}]}
    proxy = await make_proxy(config)
    headers = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    async with http.post(proxy.url + "/v1/chat/completions", headers=headers,
                         json={"model": "m", "messages": [{"role": "user", "content": "hi"}]}) as resp:
        assert resp.status == 200
    spans = await receiver.wait_for(CALLER_TRACE, "POST /v1/chat/completions", "warden.review.draw")
    [draw] = by_name(spans, "warden.review.draw")
    [root] = by_name(spans, "POST /v1/chat/completions")
    assert draw.parent_id == root.span_id
    assert draw.attributes["warden.review.sampled"] is True and draw.attributes["warden.review.probability"] == 1.0
