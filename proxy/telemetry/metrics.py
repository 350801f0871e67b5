"""Telemetry writer metrics, on the registry passed in.

Row counters move once per batch, never per emitted row (except drops, which are the alarm).
The spool's size, the full-spool alert, the buffer depth and the store's state are read at
scrape time from the writer's own fields, so nothing on the request path touches a gauge.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

INSERT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class WriterState(Protocol):
    @property
    def spool_bytes(self) -> int: ...

    @property
    def spool_full(self) -> bool: ...

    @property
    def buffered_rows(self) -> int: ...

    @property
    def store_up(self) -> bool: ...


class TelemetryMetrics:
    def __init__(self, registry: CollectorRegistry, tables: Iterable[str], state: WriterState,
                 prefix: str = "warden_telemetry") -> None:
        """`prefix`: a proxy worker's hand-off to the telemetry process counts under a name of its own."""
        self.written = Counter(
            f"{prefix}_rows_written", "Rows the store acknowledged (direct and replayed).",
            ["table"], registry=registry,
        )
        self.spooled = Counter(
            f"{prefix}_rows_spooled", "Rows written to the disk spool because the store was away or slow.",
            ["table"], registry=registry,
        )
        self.replayed = Counter(
            f"{prefix}_rows_replayed", "Rows inserted from the spool once the store was back.",
            ["table"], registry=registry,
        )
        self.dropped = Counter(
            f"{prefix}_rows_dropped", "Rows lost: spool at its disk cap, memory buffer full, or writer closed.",
            ["table", "reason"], registry=registry,
        )
        self.rejected = Counter(
            f"{prefix}_rows_rejected",
            "Rows the store refused while healthy, or that no store can take (invalid text, a wrong type: cut from "
            "their batch so the rest lands), kept in rejected.spool.",
            ["table"], registry=registry,
        )
        self.inserts = Counter(
            f"{prefix}_inserts", "INSERT statements the store acknowledged.", ["table"], registry=registry,
        )
        self.insert_seconds = Histogram(
            f"{prefix}_insert_duration_seconds", "Time of one successful insert.",
            ["table"], buckets=INSERT_BUCKETS, registry=registry,
        )
        for table in tables:  # every series exists from the start, at 0, for alerts and rate()
            for counter in (self.written, self.spooled, self.replayed, self.rejected, self.inserts):
                counter.labels(table)
            self.dropped.labels(table, "spool_full")
        registry.register(WriterCollector(state, prefix))


class WriterCollector(Collector):
    def __init__(self, state: WriterState, prefix: str = "warden_telemetry") -> None:
        self.state = state
        self.prefix = prefix

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self.state
        yield GaugeMetricFamily(
            f"{self.prefix}_spool_full", "1 while the spool is at its disk cap and rows are being dropped (alert).",
            value=1.0 if s.spool_full else 0.0,
        )
        yield GaugeMetricFamily(f"{self.prefix}_spool_bytes", "Bytes in the spool on disk.", value=s.spool_bytes)
        yield GaugeMetricFamily(
            f"{self.prefix}_buffered_rows", "Rows in memory waiting for the next flush.", value=s.buffered_rows
        )
        yield GaugeMetricFamily(
            f"{self.prefix}_store_up", "1 while the last insert or connection attempt succeeded.",
            value=1.0 if s.store_up else 0.0,
        )
