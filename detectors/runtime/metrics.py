"""Scanner metrics on a registry the scanner owns; the proxy fetches them over the socket.

Queue depths and device memory are read at scrape time by a collector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
BATCH_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class ScannerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.batch_size = Histogram("warden_scanner_batch_size", "Items per executed batch.", ["task"],
                                    buckets=BATCH_SIZE_BUCKETS, registry=registry)
        self.batch_seconds = Histogram("warden_scanner_batch_seconds", "Device time per batch (all length groups).",
                                       ["task"], buckets=BATCH_SECONDS_BUCKETS, registry=registry)
        self.items = Counter("warden_scanner_items", "Texts scanned.", ["task"], registry=registry)
        self.errors = Counter("warden_scanner_errors", "Batches that failed, by stage.", ["task", "stage"],
                              registry=registry)
        self.overloaded = Counter("warden_scanner_overloaded", "Calls refused because a queue was full.",
                                  ["task", "priority"], registry=registry)
        # Thread CPU time per stage (tokenize, forward, and a runner's own sub-stages such as PII's ner
        # and recognizers): what a text costs where, so a benchmark can say which stage to cut.
        self.cpu = Counter("warden_scanner_cpu_seconds", "CPU seconds spent per task and stage.", ["task", "stage"],
                           registry=registry)

    def watch(self, depths: Callable[[], dict[tuple[str, str], int]],
              memory: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_LiveCollector(depths, memory))


class _LiveCollector(Collector):
    def __init__(self, depths: Callable[[], dict[tuple[str, str], int]], memory: Callable[[], dict[str, int]]) -> None:
        self.depths = depths
        self.memory = memory

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("warden_scanner_queue_depth", "Items waiting.", labels=["task", "priority"])
        for (task, priority), value in self.depths().items():
            depth.add_metric([task, priority], value)
        yield depth
        memory = GaugeMetricFamily("warden_scanner_device_memory_bytes", "Memory allocated on the device by the "
                                   "task's model (0 on CPU).", labels=["task"])
        for task, value in self.memory().items():
            memory.add_metric([task], value)
        yield memory
