"""Prometheus metrics for the proxy, on a registry passed in (no module globals).

Hot-path values are counters and histograms with label children cached per label tuple;
values that already live in the pool (outstanding, health, queue depth, ejections) are read at
scrape time by a collector instead of being mirrored into gauges on every request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from proxy.upstream.group import UpstreamPool

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


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
        self.requests = Counter(
            "warden_requests", "Requests answered, by route, model and HTTP status.",
            ["route", "model", "status"], registry=registry,
        )
        self.duration = Histogram(
            "warden_request_duration_seconds", "Total time from request received to response end.",
            ["route"], buckets=LATENCY_BUCKETS, registry=registry,
        )
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
            "warden_upstream_responses", "Upstream answers by backend and HTTP status.",
            ["group", "backend", "status"], registry=registry,
        )
        self.upstream_failures = Counter(
            "warden_upstream_failures", "Upstream attempts that failed, by kind.",
            ["group", "kind"], registry=registry,
        )
        # labels() validates and locks on every call; the children are cached per label tuple
        # (bounded: routes are the router's, models are capped by ModelLabels, statuses are few).
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._route_children: dict[str, tuple[Any, Any, Any]] = {}
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
            child = self._upstream_children[key] = self.upstream_responses.labels(group, backend, str(status))
        child.inc()

    def observe_request(
        self, route: str, model: str | None, status: int, total: float, ttfb: float | None, upstream: float
    ) -> None:
        key = (route, self.model_label(model), status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(key[0], key[1], str(status))
        counter.inc()
        timings = self._route_children.get(route)
        if timings is None:
            timings = self._route_children[route] = (
                self.duration.labels(route), self.ttfb.labels(route), self.overhead.labels(route))
        timings[0].observe(total)
        if ttfb is not None:
            timings[1].observe(ttfb)
        if upstream > 0:
            timings[2].observe(max(0.0, total - upstream))


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
