"""What /metrics shows after real traffic, read back through the Prometheus text format."""

from __future__ import annotations

import aiohttp
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
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
    # `code` is the status (issue 28); `status` repeats it for one release.
    ok, bad = (("code", "200"), ("model", "m1")), (("code", "400"), ("model", ""))
    assert got[("warden_requests_total", (*ok, ("route", route), ("status", "200"), anon))] == 3
    assert got[("warden_requests_total", (*bad, ("route", route), ("status", "400"), anon))] == 1
    upstream = (("backend", up.url), ("code", "200"), ("group", "main"), ("status", "200"))
    assert got[("warden_upstream_responses_total", upstream)] == 3
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


async def test_standard_families_and_long_buckets(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                                  http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    proxy = await make_proxy(proxy_config([up.url]))
    async with http.post(proxy.url + "/v1/chat/completions", json={"model": "m1", "messages": []}) as r:
        await r.read()
    async with http.get(proxy.url + "/metrics") as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds", "python_info",
                 "python_gc_collections"):
        assert name in families, name
    bounds = {s.labels["le"] for s in families["warden_request_duration_seconds"].samples if "le" in s.labels}
    assert {"120.0", "300.0", "600.0", "1200.0", "+Inf"} <= bounds
    labels = {"route": "/v1/chat/completions", "model": "m1", "tenant": "anonymous", "code": "200", "status": "200"}
    assert proxy.metric("warden_requests_total", labels) == 1


async def test_openmetrics_scrape_carries_trace_exemplars(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                                          http: aiohttp.ClientSession) -> None:
    """Tracing on (to a collector that is not there: spans are dropped, the trace ids are still kept)."""
    up = await make_upstream()
    config = proxy_config([up.url])
    config["telemetry"]["otel"] = {"endpoint": "http://127.0.0.1:9/", "sample_ratio": 1.0}
    proxy = await make_proxy(config)
    async with http.post(proxy.url + "/v1/chat/completions", json={"model": "m1", "messages": []}) as r:
        await r.read()
    trace_id = up.requests[-1]["headers"]["traceparent"].split("-")[1]
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    async with http.get(proxy.url + "/metrics", headers={"Accept": accept}) as resp:
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        text = await resp.text()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in openmetrics_families(text)}  # type: ignore[no-untyped-call]
    exemplars = [s.exemplar for s in families["warden_request_duration_seconds"].samples if s.exemplar]
    assert [e.labels for e in exemplars] == [{"trace_id": trace_id}]
    assert families["warden_requests"].samples[0].labels["code"] == "200"


def test_model_label_is_bounded() -> None:
    labels = ModelLabels(limit=2)
    assert [labels(m) for m in ("a", "b", "c", "a", None)] == ["a", "b", "other", "a", ""]
