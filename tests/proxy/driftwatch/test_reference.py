"""A reference pinned from a time range of the drift_samples reservoir, read back from ClickHouse (chDB)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from clickhouse_connect.driver.client import Client

from drift import StreamKey
from proxy.driftwatch.reference import load_clickhouse, load_file
from proxy.telemetry.migrate import migrate
from proxy.telemetry.schema import Target
from proxy.telemetry.store import Rows


class ClientStore:
    """The store protocol over the session's chDB client (only what the reference loader calls)."""

    description = "the session's chDB"

    def __init__(self, client: Client) -> None:
        self.client = client

    async def command(self, sql: str) -> None:
        self.client.command(sql)

    async def query(self, sql: str) -> Rows:
        result = self.client.query(sql)
        return Rows(list(result.column_names), [tuple(r) for r in result.result_rows])


async def test_time_range_reference_reads_each_stream_in_range(chdb_client: Client, db: str) -> None:
    store: Any = ClientStore(chdb_client)
    target = Target(database=db)
    await migrate(store, target)
    rows = []
    for minute, model, stream in ((0, "m", "chat/prompt"), (5, "m", "chat/prompt"), (6, "m", "chat/output"),
                                  (7, "other", "chat/prompt"), (30, "m", "chat/prompt")):
        ts = datetime(2026, 11, 1, 12, minute, tzinfo=UTC)
        rows.append([ts, ts, model, stream, "", [float(minute), 1.0, 2.0], {}])
    chdb_client.insert(f"`{db}`.drift_samples", rows,
                       column_names=["ts", "window_start", "model", "stream", "reference_id", "embedding", "attrs"])
    found = await load_clickhouse(store, target.qualified("drift_samples"), datetime(2026, 11, 1, 12, 1),
                                  datetime(2026, 11, 1, 12, 10), per_stream=10)
    assert set(found) == {StreamKey("m", "chat/prompt"), StreamKey("m", "chat/output"),
                          StreamKey("other", "chat/prompt")}
    prompt = found[StreamKey("m", "chat/prompt")]
    assert prompt.sample.embeddings.tolist() == [[5.0, 1.0, 2.0]]  # minute 0 and minute 30 fall outside
    assert prompt.id == "clickhouse:2026-11-01 12:01:00/2026-11-01 12:10:00"
    capped = await load_clickhouse(store, target.qualified("drift_samples"), datetime(2026, 11, 1, 11),
                                   datetime(2026, 11, 1, 13), per_stream=2)
    assert capped[StreamKey("m", "chat/prompt")].sample.embeddings[:, 0].tolist() == [0.0, 5.0]  # the first two


def test_file_reference_names_streams_model_bar_stream(tmp_path: Any) -> None:
    path = tmp_path / "ref.npz"
    arrays: dict[str, Any] = {"m|chat/prompt": np.ones((4, 3))}  # a name no keyword can spell
    np.savez(path, **arrays)
    found = load_file(str(path))
    assert found[StreamKey("m", "chat/prompt")].sample.embeddings.shape == (4, 3)
