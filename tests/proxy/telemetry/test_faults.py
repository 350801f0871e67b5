"""Faults: the store away or slow under load, a writer killed mid-batch, a full spool disk."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import statistics
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from clickhouse_connect.driver.client import Client
from prometheus_client import CollectorRegistry

from proxy.telemetry.migrate import migrate, target_for
from proxy.telemetry.store import open_store
from tests.proxy.conftest import ProxyFactory, UpstreamFactory, proxy_config
from tests.proxy.telemetry.chhttp import FakeClickHouse
from tests.proxy.telemetry.conftest import WriterFactory, count, eventually, metric, settings

ROOT = Path(__file__).resolve().parents[3]


async def test_store_away_then_slow_under_load(
    db: str, chdb_client: Client, fake_clickhouse: FakeClickHouse, make_upstream: UpstreamFactory,
    make_proxy: ProxyFactory, http: aiohttp.ClientSession, tmp_path: Path,
) -> None:
    """Count in == count out, no duplicates, and request latency the same as with the store up."""
    up = await make_upstream()
    config = proxy_config([up.url])
    config["telemetry"] = {"dsn": f"{fake_clickhouse.url}/{db}", "spool_dir": str(tmp_path / "spool"),
                           "flush_interval_s": 0.1, "insert_timeout_s": 1.0}
    proxy = await make_proxy(config)
    writer = proxy.state.telemetry
    assert writer is not None and writer.store_up
    writer.retry_s = (0.05, 0.2)
    latencies: dict[str, list[float]] = {"up": [], "away": [], "slow": [], "back": [], "done": []}
    phase = "up"
    answered = 0

    async def client() -> None:
        nonlocal answered
        while phase != "done":
            started = time.perf_counter()
            async with http.post(proxy.url + "/v1/chat/completions", json={"model": "m", "messages": []}) as r:
                await r.read()
                assert r.status == 200
            latencies[phase].append(time.perf_counter() - started)
            answered += 1

    clients = [asyncio.create_task(client()) for _ in range(6)]
    await asyncio.sleep(1.0)
    phase = "away"
    await fake_clickhouse.go_down()  # connections refused
    await asyncio.sleep(1.5)
    phase = "slow"
    fake_clickhouse.delay_s = 3.0  # inserts applied, answers later than insert_timeout_s
    await fake_clickhouse.go_up()
    await asyncio.sleep(1.5)
    phase = "back"
    fake_clickhouse.delay_s = 0.0
    await asyncio.sleep(0.5)
    phase = "done"
    await asyncio.gather(*clients)

    await eventually(lambda: not writer.spool_pending and count(chdb_client, db) >= answered, timeout_s=20,
                     what="the spool to drain")
    await asyncio.sleep(0.3)  # anything still arriving would be a duplicate
    assert count(chdb_client, db) == answered
    assert int(chdb_client.command(f"SELECT uniqExact(request_id) FROM `{db}`.requests")) == answered  # type: ignore[arg-type]
    registry = proxy.registry
    assert metric(registry, "warden_telemetry_rows_spooled_total", table="requests") > 0
    assert metric(registry, "warden_telemetry_rows_replayed_total", table="requests") > 0
    assert metric(registry, "warden_telemetry_rows_dropped_total", table="requests", reason="spool_full") == 0
    assert metric(registry, "warden_telemetry_rows_written_total", table="requests") >= answered
    # Had emit waited on the store, requests would take >= 1 s (the insert timeout) or 3 s (the
    # slow answers); the bounds leave room for a busy 2-core machine, not for that.
    base = statistics.median(latencies["up"])
    for name in ("away", "slow"):
        assert len(latencies[name]) > 50
        assert statistics.median(latencies[name]) < 3 * base + 0.02, (name, base, statistics.median(latencies[name]))
        assert max(latencies[name]) < 0.9


async def test_writer_killed_mid_batch_replays_without_duplicates(
    db: str, chdb_client: Client, fake_clickhouse: FakeClickHouse, make_writer: WriterFactory, tmp_path: Path,
) -> None:
    """A writer process is SIGKILLed while the store holds its replayed batch; the next one repeats
    that insert under the same token and the store keeps one copy."""
    s = settings(f"{fake_clickhouse.url}/{db}", db, tmp_path / "spool", batch_rows=1000)
    store = await open_store(s.dsn)
    await migrate(store, target_for(s))
    await store.close()
    await fake_clickhouse.go_down()
    rows = 5000
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.proxy.telemetry.writer_child", s.model_dump_json(), str(rows), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        assert line.strip() == b"FLUSHED"  # every row is in the spool: the store was away throughout
        fake_clickhouse.hang = True
        fake_clickhouse.applied.clear()
        await fake_clickhouse.go_up()
        await asyncio.wait_for(fake_clickhouse.applied.wait(), 15)  # the first replayed insert landed...
        os.kill(child.pid, signal.SIGKILL)  # ...and its writer dies before hearing so
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()
    first = count(chdb_client, db)
    assert 0 < first < rows
    fake_clickhouse.hang = False
    inserts_before = fake_clickhouse.inserts
    registry = CollectorRegistry()
    await make_writer(s, registry)
    await eventually(lambda: metric(registry, "warden_telemetry_rows_replayed_total", table="requests") >= rows
                     - first, what="the replay")
    await asyncio.sleep(0.2)
    assert count(chdb_client, db) == rows
    assert int(chdb_client.command(f"SELECT uniqExact(request_id) FROM `{db}`.requests")) == rows  # type: ignore[arg-type]
    assert fake_clickhouse.inserts > inserts_before  # the landed batch was sent again, and deduplicated
    assert not list((tmp_path / "spool").glob("seg-*.spool"))


async def test_a_full_spool_raises_the_alert_and_counts_every_row(
    db: str, chdb_client: Client, fake_clickhouse: FakeClickHouse, make_writer: WriterFactory, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await fake_clickhouse.go_down()
    s = settings(f"{fake_clickhouse.url}/{db}", db, tmp_path / "spool", spool_max_bytes=4000, batch_rows=100)
    registry = CollectorRegistry()
    writer = await make_writer(s, registry)
    assert not writer.store_up
    emitted = 0
    with caplog.at_level(logging.ERROR, logger="warden.telemetry"):
        while metric(registry, "warden_telemetry_spool_full") == 0:
            for _ in range(100):
                writer.emit("requests", {"request_id": f"f{emitted}", "status": 200})
                emitted += 1
            await asyncio.sleep(0.06)
            assert emitted < 50_000, "the spool never filled"
    dropped = metric(registry, "warden_telemetry_rows_dropped_total", table="requests", reason="spool_full")
    assert dropped > 0
    assert any("spool" in r.getMessage() and "FULL" in r.getMessage() for r in caplog.records)
    assert writer.spool_bytes <= 4000
    await fake_clickhouse.go_up()
    await eventually(lambda: metric(registry, "warden_telemetry_spool_full") == 0, what="the alert to clear")
    for _ in range(100):
        writer.emit("requests", {"request_id": f"f{emitted}", "status": 200})
        emitted += 1


    def dropped_now() -> float:
        return metric(registry, "warden_telemetry_rows_dropped_total", table="requests", reason="spool_full")

    written = "warden_telemetry_rows_written_total"
    await eventually(lambda: metric(registry, written, table="requests") + dropped_now() == emitted, what="all rows")
    assert count(chdb_client, db) == emitted - dropped_now()  # in == out + dropped, exactly
