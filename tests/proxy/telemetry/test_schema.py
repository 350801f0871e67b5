"""Every DDL statement and dashboard query, run on the real ClickHouse engine (chDB)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from proxy.telemetry.migrate import applied_versions, apply_retention, migrate, target_for
from proxy.telemetry.queries import DASHBOARD_QUERIES, dashboard_query
from proxy.telemetry.schema import MIGRATIONS, TABLES, Target, render_all, ttl_days
from proxy.telemetry.settings import TelemetrySettings
from proxy.telemetry.store import open_store
from tests.proxy.telemetry.conftest import WriterFactory, count, eventually


def by_name(rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """Two-column result rows (name, value) as a dict."""
    return {str(name): value for name, value in rows}


async def test_migrate_creates_the_writers_tables_once(chdb_settings: Callable[..., TelemetrySettings],
                                                       chdb_client: Client, db: str) -> None:
    s = chdb_settings()
    store = await open_store(s.dsn)
    try:
        assert await migrate(store, target_for(s)) == [m.version for m in MIGRATIONS]
        assert await migrate(store, target_for(s)) == []  # idempotent: nothing left to apply
        assert await applied_versions(store, target_for(s)) == {1, 2, 3, 4, 5}
    finally:
        await store.close()
    for name, table in TABLES.items():
        described = chdb_client.query(f"DESCRIBE TABLE `{db}`.`{name}`").result_rows
        assert [(r[0], r[1]) for r in described] == list(zip(table.column_names, table.column_types, strict=True))
        engine = chdb_client.command(
            f"SELECT engine_full FROM system.tables WHERE database = '{db}' AND name = '{name}'")
        assert isinstance(engine, str)
        assert engine.startswith("MergeTree PARTITION BY toDate(ts) ORDER BY")
        assert "ttl_only_drop_parts = 1" in engine and "non_replicated_deduplication_window = 10000" in engine
        assert ttl_days(engine) == 90
    codecs = chdb_client.query(
        f"SELECT name, compression_codec FROM system.columns WHERE database = '{db}' AND table = 'requests'"
    ).result_rows
    assert by_name(codecs)["ts"] == "CODEC(Delta(8), ZSTD(1))"


async def test_migrations_apply_in_version_order(chdb_settings: Callable[..., TelemetrySettings],
                                                 chdb_client: Client, db: str) -> None:
    s = chdb_settings()
    indexes = f"SELECT count() FROM system.data_skipping_indices WHERE database = '{db}'"
    store = await open_store(s.dsn)
    try:
        assert await migrate(store, target_for(s), up_to=1) == [1]
        assert chdb_client.command(indexes) == 0
        assert await migrate(store, target_for(s), up_to=2) == [2]
        assert chdb_client.command(indexes) == 2
    finally:
        await store.close()


async def test_retention_follows_the_config(chdb_settings: Callable[..., TelemetrySettings],
                                            chdb_client: Client, db: str) -> None:
    store = await open_store(chdb_settings().dsn)
    try:
        await migrate(store, target_for(chdb_settings()))
        later = chdb_settings(retention_days=30, retention_days_by_table={"audit_actions": 365})
        assert sorted(await apply_retention(store, target_for(later))) == sorted(TABLES)
        assert await apply_retention(store, target_for(later)) == []
    finally:
        await store.close()
    sql = f"SELECT name, engine_full FROM system.tables WHERE database = '{db}'"
    engines = by_name(chdb_client.query(sql).result_rows)
    assert ttl_days(engines["requests"]) == 30 and ttl_days(engines["audit_actions"]) == 365
    with pytest.raises(ValueError, match="unknown table"):
        target_for(chdb_settings(retention_days_by_table={"nope": 1}))


def test_cluster_variant_parses_on_the_engine(chdb_client: Client) -> None:
    """ON CLUSTER needs a cluster to run; the engine's own parser checks every statement."""
    statements = render_all(Target(database="warden", cluster="prod"))
    # + client_request_id (migration 4); + end_user, cost, currency (migration 5): local and distributed each
    assert len(statements) == 2 + 2 * len(TABLES) + 2 + 2 + 6
    for sql in statements:
        chdb_client.command(f"EXPLAIN AST {sql}")
    text = "\n".join(statements)
    assert text.count("ON CLUSTER `prod`") == len(statements)
    assert "ReplicatedMergeTree('/clickhouse/tables/{shard}/warden/requests_local', '{replica}')" in text
    assert "ENGINE = Distributed(`prod`, `warden`, `requests_local`, rand())" in text
    assert "ALTER TABLE `warden`.`requests_local` ON CLUSTER `prod` ADD INDEX" in text


async def test_dashboard_queries_run_on_written_rows(chdb_settings: Callable[..., TelemetrySettings],
                                                     make_writer: WriterFactory, chdb_client: Client, db: str) -> None:
    writer = await make_writer(chdb_settings())
    for i in range(60):
        writer.emit("requests", {"request_id": f"r{i}", "model": f"m{i % 3}", "backend": "http://b:1",
                                 "status": 500 if i % 10 == 0 else 200, "latency_ms": float(i), "tenant": "acme",
                                 "prompt_tokens": 10, "verdict": "allow" if i % 2 else "flag",
                                 "prompt_template_id": "greet", "prompt_template_version": "3"})
    writer.emit("detections", {"request_id": "r1", "detector": "pii", "category": "EMAIL", "score": 0.9,
                               "action": "redact", "direction": "request"})
    writer.emit("drift_windows", {"model": "m0", "stream": "prompt", "statistic": "mmd", "value": 0.2,
                                  "threshold": 0.1, "drifted": True, "sample_size": 500, "p_value": None})
    writer.emit("review_samples", {"sample_id": "s1", "request_id": "r1", "model": "m1", "reason": "uniform",
                                   "sampling_rate": 0.01})
    writer.emit("review_labels", {"sample_id": "s1", "reviewer": "ana", "label": "ok"})
    writer.emit("backend_health", {"upstream_group": "main", "backend": "http://b:1", "state": "ejected",
                                   "previous_state": "healthy", "reason": "timeout"})
    writer.emit("audit_actions", {"actor": "admin", "action": "key.create", "target": "key-1",
                                  "details": {"scope": "all"}})
    await eventually(lambda: count(chdb_client, db, "audit_actions") == 1, what="rows in every table")
    results = {name: chdb_client.query(dashboard_query(name, db)).result_rows for name in DASHBOARD_QUERIES}
    assert sum(r[2] for r in results["requests_per_minute_by_model"]) == 60
    assert {r[0]: r[2] for r in results["errors_by_backend"]} == {"http://b:1": 6}
    assert {r[2:4] for r in results["lineage"]} == {("greet", "3")} and sum(r[4] for r in results["lineage"]) == 60
    assert results["detections_by_category"] == [("pii", "EMAIL", "request", 1, pytest.approx(0.9), 0)]
    assert results["review_labels_weighted"] == [("m1", "ok", 1, pytest.approx(100.0))]
    assert results["drift_over_time"][0][6] is True
    assert results["audit_trail"][0][7] == {"scope": "all"}
    assert all(results[name] for name in DASHBOARD_QUERIES)
