"""`warden keys rotate-data-key` beside a store written under the old key; `new-data-key` prints a usable key."""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
from pathlib import Path

import pytest
import yaml

from proxy.control.keys_cli import cmd_keys
from proxy.review.auth import token_sha256
from proxy.review.sqlite_store import SQLiteStore
from proxy.sealing import Sealer, key_id
from tests.proxy.conftest import proxy_config
from tests.proxy.crypto.test_stores import item

K1, K2 = os.urandom(32), os.urandom(32)


def test_rotate_data_key_reseals_the_review_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "review.sqlite3")

    async def write() -> None:
        store = SQLiteStore(db, Sealer([K1]))
        await store.open()
        for n in range(7):
            await store.add(item(f"i{n}"), "raw")
        await store.close()

    asyncio.run(write())
    config = proxy_config(["http://127.0.0.1:9"])
    config["review"] = {"enabled": True, "db_path": db, "reviewers": [{"name": "c", "token_sha256": token_sha256("x")}]}
    config["telemetry"] = {"enabled": True, "spool_dir": str(tmp_path / "spool")}
    config["encryption"] = {"enabled": True, "key_env": "TEST_ROTATE_DATA_KEY"}
    path = tmp_path / "warden.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("TEST_ROTATE_DATA_KEY", ",".join(base64.b64encode(k).decode() for k in (K2, K1)))
    args = argparse.Namespace(action="rotate-data-key", config=str(path), batch=3, pause_s=0.0)
    assert cmd_keys(args) == 0
    out = capsys.readouterr().out
    assert "7 item(s) re-sealed" in out and f"now 7 under {key_id(K2)}" in out
    assert f"nothing names a key other than {key_id(K2)}" in out

    monkeypatch.setenv("TEST_ROTATE_DATA_KEY", "not-a-key")
    assert cmd_keys(args) == 1
    assert "entry 1 is not a 256-bit key" in capsys.readouterr().err


def test_new_data_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_keys(argparse.Namespace(action="new-data-key")) == 0
    assert len(base64.b64decode(capsys.readouterr().out.strip())) == 32
