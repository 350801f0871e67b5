"""The spool on its own: order, durability across reopen, torn tails, the cap, the lock, replay plans."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.telemetry.replay import merged, plan
from proxy.telemetry.spool import Entry, Record, Spool, SpoolLocked, encode


def entry(i: int, table: str = "requests", rows: int = 3, attempted: bool = False) -> Entry:
    return Entry(f"b{i}", table, ["request_id", "status"], [[f"r{i}-{k}" for k in range(rows)], [200] * rows],
                 attempted)


def ids(records: list[Record]) -> list[str]:
    return [r.entry.id for r in records]


def test_records_come_back_in_order_across_segments_and_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=300)
    for i in range(10):
        assert spool.append(encode(entry(i)))
    assert len(list(tmp_path.glob("seg-*.spool"))) > 2 and spool.pending
    first = spool.read(max_records=4, max_rows=1000)
    assert ids(first) == ["b0", "b1", "b2", "b3"]
    assert first[0].entry.columns == [["r0-0", "r0-1", "r0-2"], [200, 200, 200]]
    spool.ack(first[-1].end)
    spool.close()

    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=300)  # the cursor survived
    rest = again.read(max_records=100, max_rows=1000)
    assert ids(rest) == [f"b{i}" for i in range(4, 10)]
    again.ack(rest[-1].end)
    assert not again.pending and again.size == 0 and not list(tmp_path.glob("seg-*.spool"))
    assert again.append(encode(entry(10)))  # a fresh segment after the cursor
    assert ids(again.read(10, 1000)) == ["b10"]
    again.close()


def test_a_torn_tail_is_cut_and_earlier_records_survive(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(encode(entry(0)))
    spool.append(encode(entry(1)))
    spool.close()
    segment = next(tmp_path.glob("seg-*.spool"))
    whole = segment.stat().st_size
    with segment.open("ab") as f:
        f.write(encode(entry(2))[:20])  # a crash in the middle of an append
    reopened = Spool(tmp_path, max_bytes=1 << 20)
    assert segment.stat().st_size == whole
    assert ids(reopened.read(10, 1000)) == ["b0", "b1"]
    reopened.append(encode(entry(3)))
    assert ids(reopened.read(10, 1000)) == ["b0", "b1", "b3"]
    reopened.close()


def test_the_cap_refuses_appends_until_replay_frees_space(tmp_path: Path) -> None:
    blobs = [encode(entry(i)) for i in range(5)]
    three = sum(map(len, blobs[:3]))
    spool = Spool(tmp_path, max_bytes=three + 10, segment_bytes=len(blobs[0]))
    assert all(spool.append(b) for b in blobs[:3])
    assert not spool.append(blobs[3])
    assert spool.size == three
    spool.ack(spool.read(1, 1)[0].end)
    assert spool.size == three - len(blobs[0])  # the replayed segment is gone
    assert spool.append(blobs[4])
    assert ids(spool.read(10, 1000)) == ["b1", "b2", "b4"]
    spool.close()


def test_the_replay_intent_survives_a_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    for i in range(3):
        spool.append(encode(entry(i)))
    records = spool.read(10, 1000)
    intent: dict[str, Any] = {"end": list(records[1].end), "groups": [[0, 1]], "solo": False, "skip": []}
    spool.set_intent(intent)
    spool.close()
    reopened = Spool(tmp_path, max_bytes=1 << 20)
    assert reopened.intent == intent
    assert ids(reopened.read(0, 0, until=(intent["end"][0], intent["end"][1]))) == ["b0", "b1"]
    reopened.close()


def test_one_writer_per_spool_directory(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000)
    with pytest.raises(SpoolLocked, match="in use by another writer"):
        Spool(tmp_path, max_bytes=1000)
    spool.close()
    Spool(tmp_path, max_bytes=1000).close()


def records(*entries: Entry) -> list[Record]:
    return [Record(e, (0, i), (0, i + 1), b"") for i, e in enumerate(entries)]


def test_replay_plan_merges_per_table_in_order_and_isolates_attempted_batches() -> None:
    recs = records(entry(0), entry(1, "detections"), entry(2), entry(3, attempted=True), entry(4), entry(5),
                   entry(6, "detections"))
    assert plan(recs, batch_rows=100, solo=False) == [[0, 2], [1, 6], [3], [4, 5]]
    assert plan(recs, batch_rows=6, solo=False) == [[0, 2], [1, 6], [3], [4, 5]]
    assert plan(recs, batch_rows=5, solo=False) == [[0], [1], [2], [3], [4], [5], [6]]
    assert plan(recs, batch_rows=100, solo=True) == [[i] for i in range(7)]
    one, token = merged(recs[3:4])
    assert token == "b3" and one is recs[3].entry  # an attempted batch keeps its first token
    both, token = merged([recs[0], recs[2]])
    assert both.rows == 6 and both.columns[0][:4] == ["r0-0", "r0-1", "r0-2", "r2-0"]
    assert token == merged([recs[0], recs[2]])[1] != merged([recs[2], recs[0]])[1]
