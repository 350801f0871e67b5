"""The writer on the real engine: batching, both client paths, draining, bounded memory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from clickhouse_connect.driver.client import Client
from prometheus_client import CollectorRegistry

from proxy.exchange import Exchange
from proxy.telemetry import TelemetryWriter
from proxy.telemetry.events import request_row
from proxy.telemetry.settings import TelemetrySettings
from proxy.telemetry.spool import decode
from proxy.telemetry.store import HttpStore, Store, open_store
from tests.proxy.telemetry.chhttp import FakeClickHouse
from tests.proxy.telemetry.conftest import WriterFactory, count, eventually, metric, settings


async def test_rows_arrive_in_few_large_inserts(chdb_settings: Callable[..., TelemetrySettings],
                                                make_writer: WriterFactory, chdb_client: Client, db: str) -> None:
    registry = CollectorRegistry()
    writer = await make_writer(chdb_settings(batch_rows=5000, flush_interval_s=0.3), registry)
    started = time.perf_counter()
    for i in range(12_000):
        writer.emit("requests", {"request_id": f"r{i}", "status": 200})
    emit_us = (time.perf_counter() - started) / 12_000 * 1e6
    for i in range(50):  # a trickle: 50 rows over ~0.5 s must not become 50 inserts
        writer.emit("detections", {"request_id": f"r{i}", "detector": "pii"})
        await asyncio.sleep(0.01)
    await eventually(lambda: count(chdb_client, db) == 12_000 and count(chdb_client, db, "detections") == 50)
    assert metric(registry, "warden_telemetry_rows_written_total", table="requests") == 12_000
    assert metric(registry, "warden_telemetry_inserts_total", table="requests") == 3  # 5000 + 5000 + 2000
    assert metric(registry, "warden_telemetry_inserts_total", table="detections") <= 4
    assert metric(registry, "warden_telemetry_rows_spooled_total", table="requests") == 0
    assert emit_us < 50, f"emit took {emit_us:.1f} µs per row"
    defaults = chdb_client.query(
        f"SELECT tenant, ttfb_ms, detection_categories, attrs, stream FROM `{db}`.requests LIMIT 1").result_rows
    assert defaults == [("", None, [], {}, False)]


async def test_tuple_rows_and_dict_rows_share_a_batch(chdb_settings: Callable[..., TelemetrySettings],
                                                     make_writer: WriterFactory, chdb_client: Client,
                                                     db: str) -> None:
    """The proxy emits `requests` rows as tuples in column order; other emitters still send dicts."""
    writer = await make_writer(chdb_settings(flush_interval_s=0.05))
    exchange = Exchange(request_id="as-tuple", started=0.0, model="m1", streamed=True)
    writer.emit("requests", request_row(exchange, "/v1/chat/completions", 200, 0.01, None, {}))
    writer.emit("requests", {"request_id": "as-dict", "status": 404})
    await eventually(lambda: count(chdb_client, db) == 2)
    rows = chdb_client.query(f"SELECT request_id, model, status, stream, ttfb_ms, detection_categories "
                             f"FROM `{db}`.requests ORDER BY request_id").result_rows
    assert rows == [("as-dict", "", 404, False, None, []), ("as-tuple", "m1", 200, True, None, [])]


def test_a_tuple_of_the_wrong_width_is_refused_not_misfiled() -> None:  # 25: end_user, cost, currency (migration 5)
    writer = TelemetryWriter(TelemetrySettings(), CollectorRegistry())
    try:
        with pytest.raises(ValueError, match="requests rows hold 2 values, the table 25 columns"):
            writer._to_entry("b-1", "requests", [(1, "r")])
        with pytest.raises(ValueError):  # rows of mixed widths
            writer._to_entry("b-2", "requests", [(1,) * 22, (1,) * 21])
    finally:
        writer._io.shutdown()


async def test_stop_flushes_everything_in_memory(chdb_settings: Callable[..., TelemetrySettings],
                                                 make_writer: WriterFactory, chdb_client: Client, db: str) -> None:
    registry = CollectorRegistry()
    writer = await make_writer(chdb_settings(flush_interval_s=60, batch_rows=100_000), registry)
    for i in range(3000):
        writer.emit("audit_actions", {"actor": "a", "action": "x", "target": str(i)})
    assert count(chdb_client, db, "audit_actions") == 0
    await writer.stop()
    assert count(chdb_client, db, "audit_actions") == 3000
    writer.emit("audit_actions", {"actor": "late"})  # after stop: counted as dropped, never raises
    assert metric(registry, "warden_telemetry_rows_dropped_total", table="audit_actions", reason="closed") == 1


async def test_memory_is_bounded(chdb_settings: Callable[..., TelemetrySettings], make_writer: WriterFactory) -> None:
    registry = CollectorRegistry()
    writer = await make_writer(chdb_settings(flush_interval_s=60, batch_rows=100_000, max_buffer_rows=100), registry)
    for i in range(150):
        writer.emit("requests", {"request_id": str(i)})
    assert writer.buffered_rows == 100
    assert metric(registry, "warden_telemetry_rows_dropped_total", table="requests", reason="buffer_full") == 50
    assert metric(registry, "warden_telemetry_buffered_rows") == 100


async def test_http_client_path_and_its_dedup_token(fake_clickhouse: FakeClickHouse, make_writer: WriterFactory,
                                                    chdb_client: Client, db: str, tmp_path: Path) -> None:
    """The async clickhouse-connect client over HTTP, the database named in the DSN path."""
    s = settings(f"{fake_clickhouse.url}/{db}", "ignored", tmp_path / "spool")
    registry = CollectorRegistry()
    writer = await make_writer(s, registry)
    for i in range(2500):
        writer.emit("requests", {"request_id": f"h{i}", "model": "m", "status": 200, "attrs": {"k": "v"}})
    await eventually(lambda: count(chdb_client, db) == 2500, what="rows over HTTP")
    assert metric(registry, "warden_telemetry_store_up") == 1
    store = await open_store(s.dsn, database=db)
    try:
        assert isinstance(store, HttpStore)
        names, types = ["ts", "request_id", "status"], ["DateTime64(3, 'UTC')", "String", "UInt16"]
        now = int(time.time() * 1000)
        for _ in range(2):  # the same batch twice, as a replay after a lost answer would send it
            await store.insert(db, "requests", names, types, [[now, now], ["d1", "d2"], [201, 201]], token="batch-42")
        rows = await store.query("SELECT count() AS n, any(attrs) AS a FROM requests WHERE model = 'm'")
        assert rows.names == ["n", "a"] and rows.rows == [(2500, {"k": "v"})]
    finally:
        await store.close()
    assert count(chdb_client, db, where="status = 201") == 2



class FlakyStore:
    """A real store whose first inserts time out: a slow server, not bad data."""

    def __init__(self, store: Store, timeouts: int) -> None:
        self.store = store
        self.timeouts = timeouts
        self.description = store.description

    async def insert(self, *args: Any, **kwargs: Any) -> None:
        if self.timeouts > 0:
            self.timeouts -= 1
            raise TimeoutError("slow")
        await self.store.insert(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_a_slow_store_is_waited_out_never_rejected(chdb_settings: Callable[..., TelemetrySettings],
                                                         make_writer: WriterFactory, chdb_client: Client,
                                                         db: str) -> None:
    s = chdb_settings(batch_rows=500)
    registry = CollectorRegistry()

    async def connect() -> Store:
        return cast(Store, FlakyStore(await open_store(s.dsn), timeouts=12))

    writer = await make_writer(s, registry, connect=connect)
    for i in range(3000):
        writer.emit("requests", {"request_id": f"s{i}"})
    await eventually(lambda: count(chdb_client, db) == 3000, what="every row despite 12 timeouts")
    assert metric(registry, "warden_telemetry_rows_rejected_total", table="requests") == 0
    assert metric(registry, "warden_telemetry_rows_spooled_total", table="requests") > 0


async def test_bad_data_is_set_aside_and_the_rest_flows(chdb_settings: Callable[..., TelemetrySettings],
                                                        make_writer: WriterFactory, chdb_client: Client,
                                                        db: str) -> None:
    registry = CollectorRegistry()
    writer = await make_writer(chdb_settings(), registry)
    writer.emit("requests", {"request_id": "good-1"})
    await eventually(lambda: count(chdb_client, db) == 1)
    writer.emit("requests", {"request_id": "bad", "status": "not a number"})
    await asyncio.sleep(0.2)
    writer.emit("requests", {"request_id": "good-2"})
    rejected = "warden_telemetry_rows_rejected_total"
    await eventually(lambda: metric(registry, rejected, table="requests") == 1, what="the bad batch set aside")
    await eventually(lambda: count(chdb_client, db) == 2, what="the rows after it")
    assert writer.spool is not None
    blob = (writer.spool.directory / "rejected.spool").read_bytes()
    assert decode(blob).columns[1] == ["bad"]
