"""Keys: hashed at rest, matched whole, compared in constant time, changed atomically."""

from __future__ import annotations

import hmac
import json
from pathlib import Path

import pytest

from proxy.governance.keys import KeyIndex, KeysFile, StoredKey, digest, key_id_of, new_key


def test_a_new_key_carries_its_id_and_only_its_hash_is_stored(tmp_path: Path) -> None:
    file = KeysFile(tmp_path / "keys.json")
    key, entry = file.create("acme", "ci")
    assert key.startswith("wk-") and key_id_of(key) == entry.id
    raw = (tmp_path / "keys.json").read_text()
    assert key not in raw and key.split("-", 2)[2] not in raw
    assert json.loads(raw)["keys"][0]["sha256"] == digest(key)
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600


def test_index_matches_the_whole_key_only(tmp_path: Path) -> None:
    file = KeysFile(tmp_path / "keys.json")
    key, entry = file.create("acme")
    index = KeyIndex(file.load())
    assert index.match(key) == entry
    forged = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert index.match(forged) is None  # right id, wrong secret
    assert index.match("wk-000000000000-" + key.split("-", 2)[2]) is None  # right secret, wrong id
    for junk in ("", "Bearer", "wk-", "wk--x", "sk-proj-123", key + " "):
        assert index.match(junk) is None


def test_rotation_and_revocation_take_the_old_secret_away(tmp_path: Path) -> None:
    file = KeysFile(tmp_path / "keys.json")
    old, entry = file.create("acme")
    new, rotated = file.rotate(entry.id)
    assert rotated.id == entry.id and new != old
    index = KeyIndex(file.load())
    assert index.match(old) is None and index.match(new) is not None
    file.revoke(entry.id)
    assert KeyIndex(file.load()).match(new) is None
    assert [k.active for k in file.load()] == [False]  # kept for the record, inactive
    with pytest.raises(KeyError):
        file.revoke(entry.id)
    with pytest.raises(KeyError):
        file.rotate("nope")


def test_comparison_is_constant_time_whether_or_not_the_id_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("proxy.governance.keys.hmac.compare_digest", spy)
    key_id, key = new_key()
    index = KeyIndex([StoredKey(key_id, "acme", digest(key))])
    assert index.match(key) is not None
    assert index.match("wk-ffffffffffff-guess") is None
    assert index.match("not even a key") is None
    assert len(calls) == 3  # a digest comparison every time, never a short cut on the id


def test_a_broken_keys_file_is_reported_not_half_read(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        KeysFile(path).load()
    path.write_text(json.dumps({"keys": [{"id": "a"}]}))
    with pytest.raises(ValueError, match="bad key entry"):
        KeysFile(path).load()
    assert KeysFile(tmp_path / "absent.json").load() == []
