"""The sealer and its key sources: AES-256-GCM envelopes, key ids, rings, and every way a key can be wrong."""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

import pytest

from proxy.sealing import OVERHEAD, EncryptionSettings, Sealer, SealingError, key_id, kid_of, load_sealer, new_key
from proxy.settings import build_settings
from tests.proxy.conftest import proxy_config

K1, K2 = os.urandom(32), os.urandom(32)


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def test_seal_open_round_trip_with_associated_data() -> None:
    sealer = Sealer([K1])
    blob = sealer.seal(b"the prompt", b"review/i1/prompt")
    assert len(blob) == len(b"the prompt") + OVERHEAD and b"the prompt" not in blob
    assert kid_of(blob) == key_id(K1) == sealer.current
    assert sealer.open(blob, b"review/i1/prompt") == b"the prompt"
    assert sealer.seal(b"x") != sealer.seal(b"x")  # a fresh nonce each time
    with pytest.raises(SealingError, match="altered, or copied from another record"):
        sealer.open(blob, b"review/i2/prompt")
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(SealingError, match="does not open"):
        sealer.open(tampered, b"review/i1/prompt")
    assert sealer.open_str(sealer.seal_str("héllo \ud800", b"a"), b"a") == "héllo \ud800"


def test_a_ring_opens_old_records_and_seals_under_its_first_key() -> None:
    old = Sealer([K1]).seal(b"old")
    ring = Sealer([K2, K1])
    assert ring.current == key_id(K2) and ring.kids == [key_id(K2), key_id(K1)]
    assert ring.open(old) == b"old" and kid_of(ring.seal(b"new")) == key_id(K2)
    with pytest.raises(SealingError, match=f"key id {key_id(K1)}, which .* does not hold"):
        Sealer([K2]).open(old)


def test_key_ids_name_no_key() -> None:
    assert key_id(K1) != key_id(K2) and len(key_id(K1)) == 16
    assert key_id(K1) not in (K1.hex(), b64(K1)) and "K1" not in repr(Sealer([K1]))
    assert len(base64.b64decode(new_key())) == 32


def test_keys_from_the_environment_in_any_spelling() -> None:
    settings = EncryptionSettings(enabled=True, key_env="TEST_DATA_KEY")
    spellings = [b64(K2), base64.urlsafe_b64encode(K2).decode().rstrip("="), K2.hex()]
    for text in spellings:
        sealer = load_sealer(settings, {"TEST_DATA_KEY": f"{text}, {b64(K1)}"})
        assert sealer is not None and sealer.kids == [key_id(K2), key_id(K1)]
    assert load_sealer(EncryptionSettings(), {}) is None  # off by default: nothing read


@pytest.mark.parametrize("value, reason", [
    ("", r"\$TEST_DATA_KEY is not set"),
    ("# only a comment", "holds no key"),
    (base64.b64encode(b"short").decode(), "entry 1 is not a 256-bit key"),
    ("not base64 at all!", "entry 1 is not a 256-bit key"),
])
def test_a_missing_or_malformed_key_is_refused_with_the_reason(value: str, reason: str) -> None:
    with pytest.raises(SealingError, match=reason):
        load_sealer(EncryptionSettings(enabled=True, key_env="TEST_DATA_KEY"), {"TEST_DATA_KEY": value})


def test_a_key_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "data.key"
    path.write_text(f"# rotated 2025-01\n{b64(K2)}\n{b64(K1)}  # the old one\n")
    path.chmod(0o644)
    settings = EncryptionSettings(enabled=True, key_file=str(path))
    with pytest.raises(SealingError, match="readable by others"):
        load_sealer(settings)
    path.chmod(0o600)
    sealer = load_sealer(settings)
    assert sealer is not None and sealer.kids == [key_id(K2), key_id(K1)]
    with pytest.raises(SealingError, match="cannot be read"):
        load_sealer(EncryptionSettings(enabled=True, key_file=str(tmp_path / "missing")))


def test_a_command_prints_the_key_the_kms_hook() -> None:
    printer = [sys.executable, "-c", f"print({b64(K1)!r})"]
    sealer = load_sealer(EncryptionSettings(enabled=True, key_command=printer))
    assert sealer is not None and sealer.current == key_id(K1)
    failing = [sys.executable, "-c", "import sys; sys.exit('permission denied on secret/warden')"]
    with pytest.raises(SealingError, match="exited 1: permission denied on secret/warden"):
        load_sealer(EncryptionSettings(enabled=True, key_command=failing))
    with pytest.raises(SealingError, match="could not run"):
        load_sealer(EncryptionSettings(enabled=True, key_command=["/nonexistent/kms"]))
    slow = [sys.executable, "-c", "import time; time.sleep(5)"]
    with pytest.raises(SealingError, match="TimeoutExpired"):
        load_sealer(EncryptionSettings(enabled=True, key_command=slow, key_command_timeout_s=0.2))


def test_one_config_block_off_by_default() -> None:
    assert build_settings(proxy_config(["http://127.0.0.1:9"])).encryption.enabled is False
    config = {**proxy_config(["http://127.0.0.1:9"]), "encryption": {"enabled": True, "key_file": "/k"}}
    assert build_settings(config).encryption.source() == "encryption.key_file (/k)"
    with pytest.raises(Exception, match="set one"):
        build_settings({**config, "encryption": {"enabled": True, "key_file": "/k", "key_command": ["kms"]}})
