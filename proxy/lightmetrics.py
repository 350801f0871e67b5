"""Counters and histograms for the request path, without prometheus_client's per-update cost.

prometheus_client guards every child with a lock and checks observability on each call: a
histogram observation is two locked increments and a linear walk of the buckets, and the
proxy records six values per request. Measured with `bench/proxy_cpu.py`, the metrics were
about a tenth of Warden's Python per request. These families keep plain numbers instead,
updated only on the event loop's thread (as every request-path update is) and read at scrape
time, also on the loop (`/metrics` renders there), so no lock is needed.

They register on the same registry and expose the same names, types, help and labels as
prometheus_client's own families, less the `_created` series.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

_go_float = cast(Callable[[float], str], floatToGoString)  # how prometheus_client writes `le`; untyped


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        self.value += amount


class HistogramChild:
    __slots__ = ("bounds", "counts", "exemplars", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; the last one is +Inf
        self.sum = 0.0
        self.exemplars: dict[int, tuple[str, float, float]] | None = None  # bucket -> (trace id, value, time)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # `le` buckets: the first bound >= value
        self.sum += value

    def observe_exemplar(self, value: float, trace_id: str) -> None:
        """An observation whose trace was kept: the bucket remembers its latest one (OpenMetrics exemplars)."""
        index = bisect_left(self.bounds, value)
        self.counts[index] += 1
        self.sum += value
        if self.exemplars is None:
            self.exemplars = {}
        self.exemplars[index] = (trace_id, value, time.time())


class _Family(Collector):
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        registry.register(self)

    def _check(self, values: tuple[str, ...]) -> tuple[str, ...]:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
        return tuple(str(v) for v in values)


class LightCounter(_Family):
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 registry: CollectorRegistry) -> None:
        self._children: dict[tuple[str, ...], CounterChild] = {}
        super().__init__(name, documentation, labelnames, registry)

    def labels(self, *values: str) -> CounterChild:
        child = self._children.get(values)
        if child is None:
            key = self._check(values)
            child = self._children.get(key) or self._children.setdefault(key, CounterChild())
        return child

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in self._children.items():
            family.add_metric(values, child.value)
        yield family


class LightHistogram(_Family):
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float],
                 registry: CollectorRegistry) -> None:
        bounds = tuple(float(b) for b in buckets)
        if list(bounds) != sorted(set(bounds)) or bounds[-1] == float("inf"):
            raise ValueError("buckets must be finite and strictly increasing (+Inf is added)")
        self.bounds = bounds
        self._labels = [_go_float(b) for b in bounds] + ["+Inf"]
        self._children: dict[tuple[str, ...], HistogramChild] = {}
        super().__init__(name, documentation, labelnames, registry)

    def labels(self, *values: str) -> HistogramChild:
        child = self._children.get(values)
        if child is None:
            key = self._check(values)
            child = self._children.get(key) or self._children.setdefault(key, HistogramChild(self.bounds))
        return child

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in self._children.items():
            running = 0
            buckets: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
            exemplars = child.exemplars
            for index, (label, count) in enumerate(zip(self._labels, child.counts, strict=True)):
                running += count
                seen = exemplars.get(index) if exemplars else None
                if seen is None:
                    buckets.append((label, running))
                else:
                    buckets.append((label, running, Exemplar({"trace_id": seen[0]}, seen[1], seen[2])))
            family.add_metric(values, buckets, child.sum)
        yield family
