"""Fixtures: one chDB engine for the whole session (a process may host only one), a database per test.

chDB takes about a second to start and allows one data directory per process, so every test
here shares the session's directory and gets its own database instead. The HTTP fixture
forwards to the same engine, so what a test writes over HTTP it reads back directly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from prometheus_client import CollectorRegistry

from proxy.telemetry import TelemetryWriter
from proxy.telemetry.settings import TelemetrySettings
from tests.proxy.telemetry.chhttp import FakeClickHouse

# chdb_dir, chdb_client and db live in tests/proxy/conftest.py: every package that writes telemetry
# (driftwatch too) shares the session's one engine.


def count(client: Client, db: str, table: str = "requests", where: str = "1") -> int:
    return int(client.command(f"SELECT count() FROM `{db}`.`{table}` WHERE {where}"))  # type: ignore[arg-type]


def settings(dsn: str, db: str, spool_dir: Path, **overrides: Any) -> TelemetrySettings:
    base: dict[str, Any] = {
        "dsn": dsn, "database": db, "spool_dir": str(spool_dir), "flush_interval_s": 0.05,
        "batch_rows": 1000, "insert_timeout_s": 2.0,
    }
    return TelemetrySettings(**{**base, **overrides})


@pytest.fixture
def chdb_settings(chdb_dir: str, db: str, tmp_path: Path) -> Callable[..., TelemetrySettings]:
    return lambda **over: settings(f"chdb://{chdb_dir}", db, tmp_path / "spool", **over)


@pytest.fixture
async def fake_clickhouse(chdb_dir: str, chdb_client: Client) -> AsyncIterator[FakeClickHouse]:
    server = await FakeClickHouse(chdb_dir).start()
    yield server
    server.hang = False
    await server.stop()


WriterFactory = Callable[..., Awaitable[TelemetryWriter]]


@pytest.fixture
async def make_writer() -> AsyncIterator[WriterFactory]:
    """Started writers, stopped at the end of the test (unless the test stopped them)."""
    writers: list[TelemetryWriter] = []

    async def make(s: TelemetrySettings, registry: CollectorRegistry | None = None, **kw: Any) -> TelemetryWriter:
        writer = TelemetryWriter(s, registry or CollectorRegistry(), retry_s=(0.05, 0.2), **kw)
        await writer.start()
        writers.append(writer)
        return writer

    yield make
    for writer in writers:
        if writer.spool is not None:
            await writer.stop(timeout_s=5)


async def eventually(check: Callable[[], bool], timeout_s: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.02)


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value
