"""What /metrics shows after real traffic, read back through the Prometheus text format."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from proxy.metrics import ModelLabels
from tests.proxy.conftest import ProxyFactory, UpstreamFactory, proxy_config


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_metrics_after_traffic(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                     http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    proxy = await make_proxy(proxy_config([up.url]))
    for _ in range(3):
        async with http.post(proxy.url + "/v1/chat/completions", json={"model": "m1", "messages": []}) as r:
            await r.read()
    async with http.post(proxy.url + "/v1/chat/completions", data=b"{") as r:
        await r.read()
    async with http.get(proxy.url + "/metrics") as resp:
        assert resp.status == 200
        got = samples(await resp.text())
    route = "/v1/chat/completions"
    anon = ("tenant", "anonymous")
    assert got[("warden_requests_total", (("model", "m1"), ("route", route), ("status", "200"), anon))] == 3
    assert got[("warden_requests_total", (("model", ""), ("route", route), ("status", "400"), anon))] == 1
    assert got[("warden_request_duration_seconds_count", (("model", "m1"), ("route", route), anon))] == 3
    assert got[("warden_request_duration_seconds_count", (("model", ""), ("route", route), anon))] == 1
    assert got[("warden_prompt_tokens_total", (("model", "m1"), anon))] == 3  # the fake reports 1 token each
    assert got[("warden_completion_tokens_total", (("model", "m1"), anon))] == 3
    assert got[("warden_time_to_first_byte_seconds_count", (("route", route),))] == 3
    assert got[("warden_proxy_overhead_seconds_count", (("route", route),))] == 3
    assert got[("warden_upstream_queue_wait_seconds_count", (("group", "main"),))] == 3
    backend = (("backend", up.url), ("group", "main"))
    assert got[("warden_upstream_healthy", backend)] == 1
    assert got[("warden_upstream_outstanding", backend)] == 0
    assert got[("warden_upstream_ejections_total", backend)] == 0
    assert got[("warden_in_flight_requests", ())] == 1  # the scrape itself


async def test_stream_pace(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                           http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    up.script.chunk_delay_s = 0.02
    proxy = await make_proxy(proxy_config([up.url]))
    body = {"model": "m1", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(proxy.url + "/v1/chat/completions", json=body) as r:
        await r.read()
    labels = {"model": "m1", "tenant": "anonymous"}
    assert proxy.metric("warden_time_to_first_token_seconds_count", labels) == 1
    assert proxy.metric("warden_inter_token_latency_seconds_count", labels) == 1
    # Five 20 ms gaps spread over at most six chunks: the mean gap is near 20 ms, not the whole stream.
    mean_gap = proxy.metric("warden_inter_token_latency_seconds_sum", labels)
    assert 0.01 < mean_gap < 0.08


def test_model_label_is_bounded() -> None:
    labels = ModelLabels(limit=2)
    assert [labels(m) for m in ("a", "b", "c", "a", None)] == ["a", "b", "other", "a", ""]
