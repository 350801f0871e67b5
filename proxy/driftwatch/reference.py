"""Pinned references: an .npz file, or a time range of the drift_samples reservoir in ClickHouse.

A stream with no pinned rows falls back to its first N rows after start, so adding a model
never needs a new reference file first.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from drift import Reference, Sample, StreamKey
from proxy.driftwatch.sink import SEALED_EMBEDDING, embedding_aad
from proxy.sealing import Sealer, SealingError
from proxy.telemetry.store import Store


def load_file(path: str) -> dict[StreamKey, Reference]:
    """One array (rows × dim) per stream, named `model|stream` in the archive."""
    found: dict[StreamKey, Reference] = {}
    with np.load(Path(path)) as archive:
        for name in archive.files:
            model, _, stream = name.partition("|")
            rows = np.asarray(archive[name], dtype=np.float32)
            found[StreamKey(model, stream)] = Reference(f"file:{Path(path).name}", Sample(rows))
    return found


async def load_clickhouse(store: Store, table: str, start: datetime, end: datetime,
                          per_stream: int, sealer: Sealer | None = None) -> dict[StreamKey, Reference]:
    """The first `per_stream` reservoir rows of each stream in [start, end); sealed rows opened off the loop."""
    fmt = "%Y-%m-%d %H:%M:%S"
    start, end = (t.astimezone(UTC) if t.tzinfo else t for t in (start, end))  # naive times are UTC
    result = await store.query(
        f"SELECT model, stream, embedding, attrs['{SEALED_EMBEDDING}'] FROM {table} "
        f"WHERE ts >= toDateTime64('{start.strftime(fmt)}', 3, 'UTC') "
        f"AND ts < toDateTime64('{end.strftime(fmt)}', 3, 'UTC') "
        f"ORDER BY model, stream, ts LIMIT {int(per_stream)} BY model, stream")
    grouped = await asyncio.to_thread(_group, result.rows, sealer)
    rid = f"clickhouse:{start.strftime(fmt)}/{end.strftime(fmt)}"
    return {key: Reference(rid, Sample(np.asarray(rows, dtype=np.float32))) for key, rows in grouped.items()}


def _group(rows: list[tuple[Any, ...]], sealer: Sealer | None) -> dict[StreamKey, list[list[float]]]:
    grouped: dict[StreamKey, list[list[float]]] = {}
    for model, stream, embedding, sealed in rows:
        vector = list(embedding)
        if sealed:
            if sealer is None:
                raise SealingError(f"drift_samples rows of {model}/{stream} are sealed, but encryption is off")
            opened = sealer.open_from_text(str(sealed), embedding_aad(str(model), str(stream)))
            vector = np.frombuffer(opened, dtype="<f4").tolist()
        grouped.setdefault(StreamKey(str(model), str(stream)), []).append(vector)
    return grouped
