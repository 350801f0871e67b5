"""Class 6: what Warden keeps on disk (review store, telemetry spool, keys file) is 0600 in 0700
directories, whatever the umask of the process that made it."""

from __future__ import annotations

import argparse
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.control.keys_cli import add_keys_parser, cmd_keys
from proxy.exchange import FindingRecord
from proxy.governance.keys import KeysFile
from proxy.review.sqlite_store import SQLiteStore
from proxy.review.store import Item
from proxy.telemetry.spool import Entry, Record, Spool, encode


@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_private(root: Path, top: Path) -> None:
    """Every directory from `top` down is 0700 and every file in them 0600."""
    seen = [top, *top.rglob("*")]
    for path in seen:
        want = 0o700 if path.is_dir() else 0o600
        assert mode(path) == want, f"{path.relative_to(root)} is {oct(mode(path))}, want {oct(want)}"


async def test_review_store_and_its_sidecars_are_private(tmp_path: Path, umask: int) -> None:
    store = SQLiteStore(str(tmp_path / "state" / "review" / "review.sqlite3"))
    await store.open()
    try:
        item = Item(id="i1", created=1.0, request_id="r", tenant="t", model="m", route="/v1/chat/completions",
                    backend="b", model_version="v", stratum="flagged", probability=1.0, verdict="flag",
                    prompt="user: hi", output="out",
                    findings=(FindingRecord("response", "tox", "toxic", 0.8, "flag", "scored 0.8"),), required=1)
        await store.add(item, "the raw output")
        names = {p.name for p in (tmp_path / "state" / "review").iterdir()}
        assert {"review.sqlite3", "review.sqlite3-wal", "review.sqlite3-shm"} <= names
        assert_private(tmp_path, tmp_path / "state")
    finally:
        await store.close()


def test_spool_files_are_private(tmp_path: Path, umask: int) -> None:
    spool = Spool(tmp_path / "spool" / "telemetry", max_bytes=1 << 20, segment_bytes=64)
    try:
        for n in range(3):
            spool.append(encode(Entry(f"b{n}", "requests", ["a"], [[n]])))
        records = spool.read(10, 100)
        spool.set_intent({"ids": [r.entry.id for r in records]})
        spool.reject(Record(records[0].entry, records[0].start, records[0].end, records[0].blob))
        assert_private(tmp_path, tmp_path / "spool")
    finally:
        spool.close()


def test_keys_file_is_private_through_the_cli(tmp_path: Path, umask: int, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "etc" / "warden" / "keys.json"
    parser = argparse.ArgumentParser()
    add_keys_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["keys", "create", "--file", str(path), "--tenant", "acme", "--name", "ci"])
    assert cmd_keys(args) == 0
    KeysFile(path).revoke(KeysFile(path).load()[0].id)
    assert path.exists()
    assert_private(tmp_path, tmp_path / "etc")
