"""Cache metrics on the proxy's registry; the store's size and the flights in the air are read at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

RESULTS = ("hit", "miss", "coalesced", "bypass", "uncacheable")


class CacheMetrics:
    def __init__(self, registry: CollectorRegistry, sizes: Callable[[], tuple[int, int, int]]) -> None:
        requests = Counter("warden_cache_requests", "Cacheable-route requests by what the cache did: hit, miss, "
                           "coalesced (shared a leader's upstream call), bypass (client asked), uncacheable "
                           "(not deterministic).", ["result"], registry=registry)
        self.results = {r: requests.labels(r) for r in RESULTS}  # children resolved once: no label lookups per request
        self.bytes_saved = Counter("warden_cache_bytes_saved", "Upstream answer bytes served without an upstream "
                                   "call (hits and coalesced followers).", registry=registry)
        evictions = Counter("warden_cache_evictions", "Entries dropped from the in-memory store, by reason.",
                            ["reason"], registry=registry)
        self.evictions = {r: evictions.labels(r) for r in ("lru", "expired", "replaced")}
        errors = Counter("warden_cache_store_errors", "Shared-store calls that failed (served as a miss) or "
                         "entries that did not decode, by operation.", ["op"], registry=registry)
        self.store_errors = {op: errors.labels(op) for op in ("get", "put", "corrupt")}
        registry.register(_SizeCollector(sizes))

    def count(self, result: str) -> None:
        self.results[result].inc()

    def store_error(self, op: str) -> None:
        self.store_errors[op].inc()

    def evicted(self, reason: str) -> None:
        self.evictions[reason].inc()


class _SizeCollector(Collector):
    def __init__(self, sizes: Callable[[], tuple[int, int, int]]) -> None:
        self.sizes = sizes

    def collect(self) -> Iterator[GaugeMetricFamily]:
        entries, size, flights = self.sizes()
        yield GaugeMetricFamily("warden_cache_entries", "Answers held in the in-memory store.", value=entries)
        yield GaugeMetricFamily("warden_cache_bytes", "Bytes of answers held in the in-memory store.", value=size)
        yield GaugeMetricFamily("warden_cache_in_flight", "Upstream calls that identical requests may join.",
                                value=flights)
