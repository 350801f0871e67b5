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
    def __init__(self, registry: CollectorRegistry, tables: Iterable[str], state: WriterState) -> None:
        self.written = Counter(
            "warden_telemetry_rows_written", "Rows the store acknowledged (direct and replayed).",
            ["table"], registry=registry,
        )
        self.spooled = Counter(
            "warden_telemetry_rows_spooled", "Rows written to the disk spool because the store was away or slow.",
            ["table"], registry=registry,
        )
        self.replayed = Counter(
            "warden_telemetry_rows_replayed", "Rows inserted from the spool once the store was back.",
            ["table"], registry=registry,
        )
        self.dropped = Counter(
            "warden_telemetry_rows_dropped", "Rows lost: spool at its disk cap, memory buffer full, or writer closed.",
            ["table", "reason"], registry=registry,
        )
        self.rejected = Counter(
            "warden_telemetry_rows_rejected",
            "Rows the store refused while healthy, or that no store can take (invalid text, a wrong type: cut from "
            "their batch so the rest lands), kept in rejected.spool.",
            ["table"], registry=registry,
        )
        self.inserts = Counter(
            "warden_telemetry_inserts", "INSERT statements the store acknowledged.", ["table"], registry=registry,
        )
        self.insert_seconds = Histogram(
            "warden_telemetry_insert_duration_seconds", "Time of one successful insert.",
            ["table"], buckets=INSERT_BUCKETS, registry=registry,
        )
        for table in tables:  # every series exists from the start, at 0, for alerts and rate()
            for counter in (self.written, self.spooled, self.replayed, self.rejected, self.inserts):
                counter.labels(table)
            self.dropped.labels(table, "spool_full")
        registry.register(WriterCollector(state))


class WriterCollector(Collector):
    def __init__(self, state: WriterState) -> None:
        self.state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self.state
        yield GaugeMetricFamily(
            "warden_telemetry_spool_full", "1 while the spool is at its disk cap and rows are being dropped (alert).",
            value=1.0 if s.spool_full else 0.0,
        )
        yield GaugeMetricFamily("warden_telemetry_spool_bytes", "Bytes in the spool on disk.", value=s.spool_bytes)
        yield GaugeMetricFamily(
            "warden_telemetry_buffered_rows", "Rows in memory waiting for the next flush.", value=s.buffered_rows
        )
        yield GaugeMetricFamily(
            "warden_telemetry_store_up", "1 while the last insert or connection attempt succeeded.",
            value=1.0 if s.store_up else 0.0,
        )
