"""Prometheus metrics for the proxy, on a registry passed in (no module globals).

Hot-path values are counters and histograms (proxy/lightmetrics.py: plain numbers, no lock per
update) with label children cached per label tuple; values that already live in the pool
(outstanding, health, queue depth, ejections) are read at scrape time by a collector instead of
being mirrored into gauges on every request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, cast

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as _openmetrics_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from proxy.lightmetrics import LightCounter as Counter
from proxy.lightmetrics import LightHistogram as Histogram
from proxy.upstream.group import UpstreamPool

# Up to 20 minutes: long generations (reasoning models, big contexts) run past 120 s, and a histogram
# whose last bucket is below them can only say "more than 120 s" of each.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
                   300, 600, 1200)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


OPENMETRICS = "application/openmetrics-text"
openmetrics_latest = cast(Callable[[Collector], bytes], _openmetrics_latest)  # untyped in prometheus_client


def exposition(registry: CollectorRegistry, appended: str, accept: str) -> tuple[bytes, str]:
    """The scrape's body and content type: OpenMetrics when the scraper asks for it (Prometheus does by
    default), since only that format carries exemplars (trace ids on the duration buckets); else text.

    `appended` is another process's text exposition (the scanner's): in OpenMetrics it is re-read and
    written again as part of the one document, less its `_created` gauges, which that format spells
    inside the counter instead.
    """
    if OPENMETRICS not in accept:
        return generate_latest(registry) + appended.encode(), CONTENT_TYPE_LATEST
    extra = [f for f in text_string_to_metric_families(appended) if not f.name.endswith("_created")] \
        if appended else []
    return openmetrics_latest(_Joined(registry, extra)), OPENMETRICS_CONTENT_TYPE


class _Joined(Collector):
    def __init__(self, registry: CollectorRegistry, extra: list[Metric]) -> None:
        self.registry, self.extra = registry, extra

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()
        yield from self.extra


class ModelLabels:
    """Bounds the `model` label: clients choose model strings, so only the first N get their own."""

    def __init__(self, limit: int = 100) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, model: str | None) -> str:
        if not model:
            return ""
        if model in self._seen:
            return model
        if len(self._seen) < self.limit:
            self._seen.add(model)
            return model
        return "other"


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry, pool: UpstreamPool) -> None:
        self.registry = registry
        self.model_label = ModelLabels()
        self.in_flight = 0
        # Standard process_* (CPU, memory, file descriptors) and python_* (version, GC) families.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        # `code` is the HTTP status, as Prometheus' own HTTP metrics name it; `status` repeats it for one
        # release so existing queries keep working (docs/metrics.md), then goes.
        self.requests = Counter(
            "warden_requests", "Requests answered, by route, model, tenant and HTTP status (`code`; `status`: "
            "the same, deprecated).", ["route", "model", "tenant", "code", "status"], registry=registry,
        )
        self.duration = Histogram(
            "warden_request_duration_seconds", "Total time from request received to response end.",
            ["route", "model", "tenant"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.generation = GenerationMetrics(registry)
        self.ttfb = Histogram(
            "warden_time_to_first_byte_seconds", "Time from request received to the first body byte sent.",
            ["route"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.overhead = Histogram(
            "warden_proxy_overhead_seconds", "Total time minus the time spent waiting on the upstream.",
            ["route"], buckets=OVERHEAD_BUCKETS, registry=registry,
        )
        self.queue_wait = Histogram(
            "warden_upstream_queue_wait_seconds", "Time a request waited for a backend slot.",
            ["group"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.retries = Counter(
            "warden_upstream_retries", "Requests retried on another backend after a failure before any byte.",
            ["group"], registry=registry,
        )
        self.upstream_responses = Counter(
            "warden_upstream_responses", "Upstream answers by backend and HTTP status (`code`; `status`: the "
            "same, deprecated).", ["group", "backend", "code", "status"], registry=registry,
        )
        self.upstream_failures = Counter(
            "warden_upstream_failures", "Upstream attempts that failed, by kind.",
            ["group", "kind"], registry=registry,
        )
        # labels() validates and locks on every call; the children are cached per label tuple
        # (bounded: routes are the router's, models are capped by ModelLabels, statuses are few).
        self._request_children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
        self._route_children: dict[str, tuple[Any, Any]] = {}
        self._queue_children: dict[str, Any] = {}
        self._upstream_children: dict[tuple[str, str, int], Any] = {}
        registry.register(PoolCollector(pool, self))

    def observe_queue_wait(self, group: str, seconds: float) -> None:
        child = self._queue_children.get(group)
        if child is None:
            child = self._queue_children[group] = self.queue_wait.labels(group)
        child.observe(seconds)

    def count_upstream_response(self, group: str, backend: str, status: int) -> None:
        key = (group, backend, status)
        child = self._upstream_children.get(key)
        if child is None:
            code = str(status)
            child = self._upstream_children[key] = self.upstream_responses.labels(group, backend, code, code)
        child.inc()

    def observe_request(
        self, route: str, model: str | None, tenant: str, status: int, total: float, ttfb: float | None,
        upstream: float, trace_id: str | None = None,
    ) -> None:
        """`trace_id` (a kept trace's) becomes the duration bucket's exemplar, shown with OpenMetrics scrapes."""
        key = (route, self.model_label(model), tenant, status)
        children = self._request_children.get(key)
        if children is None:
            code = str(status)
            children = self._request_children[key] = (
                self.requests.labels(key[0], key[1], tenant, code, code), self.duration.labels(*key[:3]))
        children[0].inc()
        if trace_id is None:
            children[1].observe(total)
        else:
            children[1].observe_exemplar(total, trace_id)
        timings = self._route_children.get(route)
        if timings is None:
            timings = self._route_children[route] = (self.ttfb.labels(route), self.overhead.labels(route))
        if ttfb is not None:
            timings[0].observe(ttfb)
        if upstream > 0:
            timings[1].observe(max(0.0, total - upstream))

    def observe_generation(self, ex: Generated) -> None:
        """Tokens from the backend's usage; for SSE streams also time to first token and inter-token latency."""
        if not (ex.streamed or ex.prompt_tokens or ex.completion_tokens):
            return
        stream = None
        if ex.streamed and ex.first_byte is not None and ex.last_byte is not None:
            # The first chunk is the first token as the client sees it; gaps are counted in tokens when the
            # stream reported usage, else in chunks (one event per token is what servers send).
            stream = (ex.first_byte - ex.started, ex.last_byte - ex.first_byte, ex.completion_tokens or ex.chunks)
        self.generation.observe(self.model_label(ex.model), ex.tenant, (ex.prompt_tokens, ex.completion_tokens),
                                stream)


class Generated(Protocol):
    """The fields of a finished exchange (proxy/relay.py) that generation metrics read."""

    model: str | None
    tenant: str
    started: float
    first_byte: float | None
    last_byte: float | None
    chunks: int
    streamed: bool
    prompt_tokens: int
    completion_tokens: int


class GenerationMetrics:
    """What a model produced per request: tokens, and for streams the pace clients feel.

    Inter-token latency is observed once per stream (its mean gap), not once per chunk: a
    histogram observation per token would put a lock on the relay's inner loop.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["model", "tenant"]
        self.prompt_tokens = Counter("warden_prompt_tokens", "Prompt tokens the backends reported (usage).",
                                     labels, registry=registry)
        self.completion_tokens = Counter("warden_completion_tokens", "Completion tokens the backends reported "
                                         "(usage).", labels, registry=registry)
        self.ttft = Histogram("warden_time_to_first_token_seconds", "Streamed answers: time from request "
                              "received to the first chunk relayed.", labels, buckets=LATENCY_BUCKETS,
                              registry=registry)
        self.itl = Histogram("warden_inter_token_latency_seconds", "Streamed answers: mean gap between tokens "
                             "(chunks when the stream carries no usage), one observation per stream.", labels,
                             buckets=LATENCY_BUCKETS, registry=registry)
        self._children: dict[tuple[str, str], tuple[Any, Any, Any, Any]] = {}

    def observe(self, model: str, tenant: str, usage: tuple[int, int], stream: tuple[float, float, int] | None) -> None:
        key = (model, tenant)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = (self.prompt_tokens.labels(*key), self.completion_tokens.labels(*key),
                                       self.ttft.labels(*key), self.itl.labels(*key))
        if usage[0]:
            c[0].inc(usage[0])
        if usage[1]:
            c[1].inc(usage[1])
        if stream is not None:
            first, span, pieces = stream
            c[2].observe(first)
            if pieces > 1:
                c[3].observe(span / (pieces - 1))


class PoolCollector(Collector):
    def __init__(self, pool: UpstreamPool, metrics: ProxyMetrics) -> None:
        self.pool = pool
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        in_flight = GaugeMetricFamily("warden_in_flight_requests", "Requests being handled now.")
        in_flight.add_metric([], self.metrics.in_flight)
        yield in_flight
        labels = ["group", "backend"]
        healthy = GaugeMetricFamily("warden_upstream_healthy", "1 when the backend takes requests.", labels=labels)
        outstanding = GaugeMetricFamily(
            "warden_upstream_outstanding", "Requests in flight on the backend.", labels=labels
        )
        ejections = CounterMetricFamily(
            "warden_upstream_ejections", "Passive ejections after failures.", labels=labels
        )
        queue = GaugeMetricFamily(
            "warden_upstream_queue_depth", "Requests waiting for a backend slot.", labels=["group"]
        )
        for group in self.pool.groups:
            queue.add_metric([group.name], group.queue_depth)
            for b in group.backends:
                healthy.add_metric([group.name, b.url], 1.0 if b.available else 0.0)
                outstanding.add_metric([group.name, b.url], b.outstanding)
                ejections.add_metric([group.name, b.url], b.ejections_total)
        yield from (healthy, outstanding, ejections, queue)
