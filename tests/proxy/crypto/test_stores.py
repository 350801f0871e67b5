"""Every store sealed through one sealer: round trips, rotation from key 1 to key 2, a wrong key stops the
start with its reason, and the bytes on disk hold no plaintext of a marker prompt."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest

from drift import WindowResult
from proxy.app.review import REVIEW
from proxy.cache.redis_store import RedisStore
from proxy.cache.store import Entry as CacheEntry
from proxy.driftwatch.reference import load_clickhouse
from proxy.driftwatch.sink import SEALED_EMBEDDING, sample_rows
from proxy.exchange import FindingRecord
from proxy.review.sqlite_store import SQLiteStore
from proxy.review.store import Item
from proxy.sealing import Sealer, SealingError, key_id
from proxy.telemetry.spool import Entry, Spool, spool_key_ids

K1, K2 = os.urandom(32), os.urandom(32)
MARKER = "MARKER-4f1d9 my card is 4111 1111 1111 1111"


def item(item_id: str, text: str = MARKER) -> Item:
    return Item(id=item_id, created=1.0, request_id="r", tenant="t", model="m", route="/v1/chat/completions",
                backend="b", model_version="v", stratum="flagged", probability=1.0, verdict="flag",
                prompt=f"user: {text}", output=f"redacted {text}",
                findings=(FindingRecord("response", "pii", "card", 0.9, "redact", f"matched {text}"),), required=1)


def disk_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


async def test_review_store_round_trip_rotation_and_no_plaintext_on_disk(tmp_path: Path) -> None:
    db = tmp_path / "review" / "review.sqlite3"
    store = SQLiteStore(str(db), Sealer([K1]))
    await store.open()
    try:
        for n in range(5):
            await store.add(item(f"i{n}"), f"raw {MARKER}")
        got = await store.get("i0")
        assert got is not None and got.prompt == f"user: {MARKER}"
        assert got.findings[0].explanation == f"matched {MARKER}"
        assert await store.raw_output("i0") == f"raw {MARKER}"
        assert (await store.export())[0]["output"] == f"redacted {MARKER}"
        assert len((await store.estimate_inputs()).items) == 5
        assert MARKER.encode() not in disk_bytes(db.parent)  # the file, its -wal and -shm
    finally:
        await store.close()

    store = SQLiteStore(str(db), Sealer([K2, K1]))  # key 2 first: it seals, key 1 still opens
    await store.open()
    try:
        await store.add(item("new"), None)
        assert await store.key_ids() == {key_id(K1): 5, key_id(K2): 1}
        assert await store.reseal(batch=2) == 2
        while await store.reseal(batch=2):
            pass
        assert await store.key_ids() == {key_id(K2): 6}
    finally:
        await store.close()

    store = SQLiteStore(str(db), Sealer([K2]))  # key 1 gone: everything written under it still reads
    await store.open()
    try:
        got = await store.get("i3")
        assert got is not None and got.output == f"redacted {MARKER}"
        assert await store.raw_output("i3") == f"raw {MARKER}"
    finally:
        await store.close()


async def test_review_store_refuses_a_wrong_or_missing_key_at_open(tmp_path: Path) -> None:
    db = str(tmp_path / "review.sqlite3")
    store = SQLiteStore(db, Sealer([K1]))
    await store.open()
    await store.add(item("i1"), None)
    await store.close()
    for sealer, reason in ((Sealer([K2]), f"sealed under key id\\(s\\) {key_id(K1)}, which"),
                           (None, "but encryption is off")):
        wrong = SQLiteStore(db, sealer)
        with pytest.raises(SealingError, match=reason):
            await wrong.open()
        await wrong.close()


async def test_plaintext_items_from_before_encryption_are_sealed_by_rotation(tmp_path: Path) -> None:
    db = str(tmp_path / "review.sqlite3")
    store = SQLiteStore(db)
    await store.open()
    await store.add(item("old"), "raw")
    await store.close()
    store = SQLiteStore(db, Sealer([K1]))
    await store.open()
    try:
        assert await store.key_ids() == {"plaintext": 1}
        assert await store.reseal() == 1 and await store.key_ids() == {key_id(K1): 1}
        got = await store.get("old")
        assert got is not None and got.prompt == f"user: {MARKER}"
    finally:
        await store.close()


def spool_entry(n: int) -> Entry:
    return Entry(f"b{n}", "review_samples", ["prompt", "output"], [[f"user: {MARKER}"], [f"out {MARKER}"]])


def test_spool_round_trip_rotation_and_wrong_key(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = Spool(directory, max_bytes=1 << 20, segment_bytes=256, sealer=Sealer([K1]))
    for n in range(3):
        assert spool.append(spool.encode(spool_entry(n)))
    spool.close()
    assert MARKER.encode() not in disk_bytes(directory)
    assert spool_key_ids(directory) == {key_id(K1): 3}
    for sealer, reason in ((Sealer([K2]), f"key id\\(s\\) {key_id(K1)}, which"), (None, "encryption is off")):
        with pytest.raises(SealingError, match=reason):
            Spool(directory, max_bytes=1 << 20, sealer=sealer)
    spool = Spool(directory, max_bytes=1 << 20, segment_bytes=256, sealer=Sealer([K2, K1]))
    spool.append(spool.encode(spool_entry(3)))
    records = spool.read(max_records=10, max_rows=100)
    assert [r.entry.id for r in records] == ["b0", "b1", "b2", "b3"]
    assert records[0].entry.columns == [[f"user: {MARKER}"], [f"out {MARKER}"]]
    spool.ack(records[-1].end)  # replayed: the old key's records are gone with their segments
    spool.close()
    assert spool_key_ids(directory) == {}


async def test_telemetry_writer_spools_sealed_rows(tmp_path: Path) -> None:
    """The writer (and through it a worker's spool) seals what it spools while the store is away."""
    from prometheus_client import CollectorRegistry

    from proxy.telemetry.settings import TelemetrySettings
    from proxy.telemetry.store import Store
    from proxy.telemetry.writer import TelemetryWriter

    async def unreachable() -> Store:
        raise OSError("connection refused")

    settings = TelemetrySettings(dsn="http://127.0.0.1:9/warden", spool_dir=str(tmp_path / "spool"),
                                 flush_interval_s=0.05)
    writer = TelemetryWriter(settings, CollectorRegistry(), connect=unreachable, sealer=Sealer([K1]))
    await writer.start()
    writer.emit("review_samples", {"sample_id": "s1", "prompt": MARKER, "output": MARKER})
    await writer.stop(timeout_s=2)
    assert spool_key_ids(tmp_path / "spool") == {key_id(K1): 1}
    assert MARKER.encode() not in disk_bytes(tmp_path / "spool")


def window(samples: np.ndarray) -> WindowResult:
    job = SimpleNamespace(key=SimpleNamespace(model="m", stream="chat/prompt"), index=7, window_start=1.0,
                          window_end=2.0, reference=SimpleNamespace(id="first"), samples=samples)
    return cast(WindowResult, SimpleNamespace(job=job))


async def test_drift_samples_are_sealed_and_read_back_as_a_reference() -> None:
    vectors = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    sealer = Sealer([K1])
    rows = sample_rows(window(vectors), sealer)
    assert all(r["embedding"] == [] and r["attrs"][SEALED_EMBEDDING].startswith("wsl1:") for r in rows)
    assert vectors.tobytes() not in b"".join(base64.b64decode(r["attrs"][SEALED_EMBEDDING][5:]) for r in rows)

    class Rows:
        def __init__(self, rows: list[tuple[Any, ...]]) -> None:
            self.rows = rows

    class FakeStore:
        async def query(self, sql: str) -> Rows:
            assert f"attrs['{SEALED_EMBEDDING}']" in sql
            return Rows([(r["model"], r["stream"], r["embedding"], r["attrs"][SEALED_EMBEDDING]) for r in rows])

    from datetime import datetime

    store = cast(Any, FakeStore())
    refs = await load_clickhouse(store, "drift_samples", datetime(2025, 1, 1), datetime(2025, 1, 2), 10,
                                 Sealer([K2, K1]))
    np.testing.assert_array_equal(next(iter(refs.values())).sample.embeddings, vectors)
    with pytest.raises(SealingError, match="encryption is off"):
        await load_clickhouse(store, "drift_samples", datetime(2025, 1, 1), datetime(2025, 1, 2), 10)
    assert sample_rows(window(vectors))[0]["embedding"] == [float(v) for v in vectors[0]]  # off: as before


async def test_redis_cache_entries_are_sealed_and_bound_to_their_key(redis_url: str) -> None:
    import redis.asyncio as aioredis

    errors: list[str] = []
    prefix = f"seal-{uuid.uuid4().hex}:"
    store = RedisStore(redis_url, 60, prefix, errors.append, sealer=Sealer([K1]))
    raw = aioredis.from_url(redis_url)
    try:
        big = MARKER.encode() * 5000  # over 64 KiB: sealed on a thread
        for key, chunks in (("k1", [MARKER.encode()]), ("k2", [big])):
            await store.put(key, CacheEntry.of(200, "application/json", chunks, store.now()))
            stored = await raw.get(prefix + key)
            assert isinstance(stored, bytes) and MARKER.encode() not in stored
            got = await store.get(key)
            assert got is not None and got.chunks == tuple(chunks)
        await raw.set(prefix + "k3", cast(bytes, await raw.get(prefix + "k1")))  # moved to another key: refused
        assert await store.get("k3") is None and errors == ["corrupt"]
        await raw.set(prefix + "k4", b"WC1\x00 planted, unsealed")
        assert await store.get("k4") is None and errors == ["corrupt", "corrupt"]
        rotated = RedisStore(redis_url, 60, prefix, errors.append, sealer=Sealer([K2, K1]))
        try:
            assert (await rotated.get("k1")) is not None
        finally:
            await rotated.close()
    finally:
        await raw.aclose()
        await store.close()


def _key_env(key: bytes) -> str:
    name = f"TEST_WARDEN_DATA_KEY_{uuid.uuid4().hex[:8].upper()}"
    os.environ[name] = base64.b64encode(key).decode()
    return name


async def test_the_proxy_seals_end_to_end_and_a_wrong_key_stops_the_start(
        tmp_path: Path, make_upstream: Any, make_proxy: Any, http: Any) -> None:
    from proxy.review.auth import token_sha256
    from tests.proxy.conftest import proxy_config

    up = await make_upstream()
    config = proxy_config([up.url])
    config["review"] = {"enabled": True, "db_path": str(tmp_path / "review" / "r.sqlite3"), "rate": 1.0,
                        "reviewers": [{"name": "carol", "token_sha256": token_sha256("t" * 24)}], "raw_text": True}
    config["telemetry"] = {"enabled": True, "dsn": "http://127.0.0.1:9/warden", "spool_dir": str(tmp_path / "spool"),
                           "flush_interval_s": 0.05}
    config["encryption"] = {"enabled": True, "key_env": _key_env(K1)}
    proxy = await make_proxy(config)
    body = {"model": "fake-model", "messages": [{"role": "user", "content": MARKER}]}
    async with http.post(proxy.url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200
    service = proxy.runner.app[REVIEW].service
    for _ in range(200):
        if await service.store.pending() and spool_key_ids(tmp_path / "spool"):
            break
        await asyncio.sleep(0.05)
    assert await service.store.pending() == 1
    assert MARKER.encode() not in disk_bytes(tmp_path / "review")
    assert set(spool_key_ids(tmp_path / "spool")) == {key_id(K1)}
    assert MARKER.encode() not in disk_bytes(tmp_path / "spool")
    await proxy.runner.cleanup()

    config["encryption"] = {"enabled": True, "key_env": _key_env(K2)}
    with pytest.raises(SealingError, match=f"holds records sealed under key id\\(s\\) {key_id(K1)}"):
        await make_proxy(config)
    config["encryption"] = {"enabled": True, "key_env": "TEST_WARDEN_DATA_KEY_UNSET"}
    with pytest.raises(SealingError, match="TEST_WARDEN_DATA_KEY_UNSET is not set"):
        await make_proxy(config)
