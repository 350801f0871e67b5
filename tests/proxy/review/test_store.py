"""The SQLite store: leases that exclude, labels only from the lease holder, double review, counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.exchange import FindingRecord
from proxy.review.sqlite_store import SQLiteStore
from proxy.review.store import Filters, Item, Label


def make_item(n: int, stratum: str = "uniform", required: int = 1, detector: str = "") -> Item:
    findings = (FindingRecord("response", detector, "x", 0.9, "flag", "why"),) if detector else ()
    return Item(id=f"i{n}", created=float(n), request_id=f"r{n}", tenant="t", model="m1" if n % 2 else "m2",
                route="/v1/chat/completions", backend="b", model_version="v", stratum=stratum, probability=0.5,
                verdict="allow", prompt=f"prompt {n}", output=f"output {n}", findings=findings, required=required)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "sub" / "r.sqlite3"))
    await s.open()
    yield s
    await s.close()


async def test_lease_excludes_others_until_it_expires(store: SQLiteStore) -> None:
    await store.add(make_item(1), raw_output="raw 1")
    assert await store.claim("i1", "alice", now=100, lease_s=60)
    assert not await store.claim("i1", "bob", now=120, lease_s=60)
    assert await store.queue("bob", Filters(), now=120) == []
    assert not await store.label("i1", "bob", Label("bob", "ok"))
    assert await store.claim("i1", "bob", now=161, lease_s=60)  # alice's lease ran out
    assert not await store.label("i1", "alice", Label("alice", "ok"))
    assert await store.label("i1", "bob", Label("bob", "violation", ("pii",), "c", 170))
    item = await store.get("i1")
    assert item is not None and item.labels == [Label("bob", "violation", ("pii",), "c", 170)]
    assert item.lease_owner is None and item.has_raw
    assert await store.raw_output("i1") == "raw 1"
    assert not await store.claim("i1", "alice", now=200, lease_s=60)  # needs no more reviews


async def test_double_review_needs_two_different_reviewers(store: SQLiteStore) -> None:
    await store.add(make_item(1, required=2), None)
    first = await store.claim_next("alice", Filters(), now=1, lease_s=60)
    assert first is not None and first.id == "i1"
    assert await store.label("i1", "alice", Label("alice", "ok", ts=2))
    assert await store.claim_next("alice", Filters(), now=3, lease_s=60) is None  # not twice by one reviewer
    assert await store.claim("i1", "bob", now=3, lease_s=60)
    assert await store.label("i1", "bob", Label("bob", "violation", ts=4))
    inputs = await store.estimate_inputs()
    assert inputs.pairs == [("ok", "violation")]
    assert inputs.items[0].outcome is None  # a tie is undecided


async def test_filters_facets_counts_and_export(store: SQLiteStore) -> None:
    await store.add(make_item(1, "blocked", detector="secrets"), None)
    await store.add(make_item(2, "uniform"), None)
    await store.add(make_item(3, "flagged", detector="tox"), None)
    assert [i.id for i in await store.queue("a", Filters(stratum="blocked"), 0)] == ["i1"]
    assert [i.id for i in await store.queue("a", Filters(model="m1"), 0)] == ["i1", "i3"]
    assert [i.id for i in await store.queue("a", Filters(detector="tox"), 0)] == ["i3"]
    assert await store.facets() == {"stratum": ["blocked", "flagged", "uniform"], "model": ["m1", "m2"],
                                    "detector": ["secrets", "tox"]}
    await store.add_counts(Counter({("m1", "uniform"): 5, ("m2", "uniform"): 2}))
    await store.add_counts(Counter({("m1", "blocked"): 1}))
    assert (await store.estimate_inputs()).traffic == {"m1": 6, "m2": 2}
    rows = await store.export()
    assert [r["id"] for r in rows] == ["i1", "i2", "i3"]
    assert "raw" not in str(rows) and rows[0]["findings"][0]["explanation"] == "why"
