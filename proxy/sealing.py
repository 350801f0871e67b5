"""Sealing what Warden keeps at rest: AES-256-GCM under a data key ring, one format for every store.

Every store that can hold raw text or secrets (the review store, the telemetry spool, the cache
in Redis, the text and embedding columns Warden writes to ClickHouse) seals through this one
module, so there is one envelope, one key ring and one rule for a wrong key instead of one per
store. A sealed value is self-describing:

    b"WSL1" | key id (8 bytes) | nonce (12 bytes, random) | ciphertext | GCM tag (16 bytes)

The key id is an HMAC of the key (never the key, never reversible to it), so it travels with each
record: a ring of several keys opens records sealed under any of them, and a record whose key is
not in the ring fails with the id it needs, which is what makes rotation possible without
rewriting everything at once and a wrong key a clear error instead of garbage. The caller's
associated data (a record id and column, a cache key) is authenticated too, so a sealed value
copied to another row or key does not open.

The ring comes from `WARDEN_DATA_KEY`, a key file or a command that prints it (the KMS hook):
one key per line (base64 or hex of 32 bytes), the first the one that seals, the others kept to
open what they sealed until `warden keys rotate-data-key` has re-sealed it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import Field, model_validator

from proxy.section import Section

log = logging.getLogger("warden.sealing")

MAGIC = b"WSL1"
KID_BYTES = 8
NONCE_BYTES = 12
TAG_BYTES = 16
HEAD = len(MAGIC) + KID_BYTES + NONCE_BYTES
OVERHEAD = HEAD + TAG_BYTES  # bytes a sealed value adds to its plaintext
TEXT_PREFIX = "wsl1:"  # a sealed value in a text column (ClickHouse String, a JSON attribute): base64 after it


class SealingError(Exception):
    """A data key is missing, malformed or wrong, or a sealed value does not open: never silent plaintext."""


class EncryptionSettings(Section):
    """Encryption at rest (docs/deploy.md, "Encryption at rest"): off by default, one block to enable."""

    enabled: bool = Field(False, description="seal raw text and secrets at rest with AES-256-GCM")
    key_env: str = Field("WARDEN_DATA_KEY", description="the environment variable holding the key ring")
    key_file: str | None = Field(None, description="a file holding the key ring (one key per line), "
                                 "instead of the environment variable")
    key_command: list[str] | None = Field(None, description="a command (argv) that prints the key ring: the "
                                          "KMS hook, e.g. [vault, kv, get, -field=key, secret/warden]")
    key_command_timeout_s: float = Field(10.0, gt=0, le=300)

    @model_validator(mode="after")
    def _one_source(self) -> EncryptionSettings:
        if self.key_file and self.key_command:
            raise ValueError("key_file and key_command are two sources of one key ring: set one")
        if self.key_command is not None and not self.key_command:
            raise ValueError("key_command: give the command as a list, e.g. [cat, /run/secrets/key]")
        return self

    def source(self) -> str:
        """Where the ring comes from, in words for error messages (never the key itself)."""
        if self.key_command:
            return f"encryption.key_command ({self.key_command[0]})"
        if self.key_file:
            return f"encryption.key_file ({self.key_file})"
        return f"${self.key_env}"


def key_id(key: bytes) -> str:
    """A key's public name: HMAC-SHA256 of a fixed label under the key, first 8 bytes in hex."""
    return hmac.new(key, b"warden data key id", hashlib.sha256).digest()[:KID_BYTES].hex()


def new_key() -> str:
    """A fresh random data key, base64: what `warden keys new-data-key` prints."""
    return base64.b64encode(os.urandom(32)).decode()


def parse_ring(text: str, source: str) -> list[bytes]:
    """Keys from text: one per line (or comma-separated), `#` comments; base64, base64url or 64 hex digits."""
    keys: list[bytes] = []
    for number, line in enumerate(text.replace(",", "\n").splitlines(), 1):
        word = line.split("#", 1)[0].strip()
        if not word:
            continue
        key = _decode_key(word)
        if key is None:
            raise SealingError(f"{source}: entry {number} is not a 256-bit key (base64 or hex of 32 bytes; "
                               f"make one with `warden keys new-data-key`)")
        keys.append(key)
    if not keys:
        raise SealingError(f"{source} holds no key: encryption.enabled is true, so Warden will not start "
                           "without one (a store must never fall back to plaintext)")
    return keys


def _decode_key(word: str) -> bytes | None:
    if len(word) == 64:
        try:
            return bytes.fromhex(word)
        except ValueError:
            pass
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            key = decode(word + "=" * (-len(word) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(key) == 32:
            return key
    return None


def read_ring(settings: EncryptionSettings, environ: Mapping[str, str] | None = None) -> list[bytes]:
    """The key ring from its source; blocks (a file, a command): call it off the event loop."""
    source = settings.source()
    if settings.key_command:
        try:
            done = subprocess.run(settings.key_command, capture_output=True, text=True, check=False,
                                  timeout=settings.key_command_timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SealingError(f"{source} could not run: {type(exc).__name__}: {exc}") from None
        if done.returncode != 0:
            said = (done.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1][:300]
            raise SealingError(f"{source} exited {done.returncode}: {said}")
        return parse_ring(done.stdout, source)
    if settings.key_file:
        path = Path(settings.key_file)
        try:
            mode = path.stat().st_mode & 0o777
            text = path.read_text()
        except OSError as exc:
            raise SealingError(f"{source} cannot be read: {exc.strerror}") from None
        if mode & 0o077:
            raise SealingError(f"{source} is readable by others (mode {mode:o}): chmod 600 it")
        return parse_ring(text, source)
    value = (os.environ if environ is None else environ).get(settings.key_env, "")
    if not value.strip():
        raise SealingError(f"encryption.enabled is true, but {source} is not set (or set encryption.key_file "
                           "or encryption.key_command): Warden will not start without the data key")
    return parse_ring(value, source)


def load_sealer(settings: EncryptionSettings, environ: Mapping[str, str] | None = None) -> Sealer | None:
    """The sealer the config asks for, or None when encryption is off. Blocking: run it off the loop."""
    if not settings.enabled:
        return None
    sealer = Sealer(read_ring(settings, environ), settings.source())
    log.info("encryption at rest on: sealing under key id %s (%d key(s) in the ring from %s)",
             sealer.current, len(sealer.kids), sealer.source)
    return sealer


class Sealer:
    """The key ring and the envelope. Thread-safe: stores seal on their own I/O threads."""

    def __init__(self, keys: Sequence[bytes], source: str = "the data key ring") -> None:
        if not keys:
            raise SealingError(f"{source} holds no key")
        self.source = source
        self._ciphers: dict[bytes, AESGCM] = {}
        for key in keys:
            if len(key) != 32:
                raise SealingError(f"{source}: a data key must be 32 bytes (AES-256), not {len(key)}")
            self._ciphers.setdefault(bytes.fromhex(key_id(key)), AESGCM(key))
        self._current = bytes.fromhex(key_id(keys[0]))

    def __repr__(self) -> str:
        return f"Sealer(current={self.current}, kids={self.kids})"

    @property
    def current(self) -> str:
        """The id of the key that seals."""
        return self._current.hex()

    @property
    def kids(self) -> list[str]:
        return [k.hex() for k in self._ciphers]

    def seal(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return MAGIC + self._current + nonce + self._ciphers[self._current].encrypt(nonce, plaintext, aad)

    def open(self, blob: bytes, aad: bytes = b"") -> bytes:
        if not is_sealed(blob) or len(blob) < OVERHEAD:
            raise SealingError("not a sealed value (no WSL1 envelope)")
        kid = blob[len(MAGIC):len(MAGIC) + KID_BYTES]
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise SealingError(f"a record is sealed under key id {kid.hex()}, which {self.source} does not hold "
                               f"(it holds {', '.join(self.kids)}): a wrong data key, or an old one removed "
                               "before `warden keys rotate-data-key` re-sealed everything")
        try:
            return cipher.decrypt(blob[len(MAGIC) + KID_BYTES:HEAD], blob[HEAD:], aad)
        except InvalidTag:
            raise SealingError(f"a record sealed under key id {kid.hex()} does not open: it was altered, "
                               "or copied from another record") from None

    def seal_text(self, text: str, aad: bytes = b"") -> bytes:
        return self.seal(text.encode("utf-8", "surrogatepass"), aad)

    def open_text(self, blob: bytes, aad: bytes = b"") -> str:
        return self.open(blob, aad).decode("utf-8", "surrogatepass")

    def seal_str(self, text: str, aad: bytes = b"") -> str:
        """For text columns (ClickHouse String, a map attribute): the envelope in base64 behind `wsl1:`."""
        return self.seal_to_text(text.encode("utf-8", "surrogatepass"), aad)

    def open_str(self, value: str, aad: bytes = b"") -> str:
        return self.open_from_text(value, aad).decode("utf-8", "surrogatepass")

    def seal_to_text(self, data: bytes, aad: bytes = b"") -> str:
        return TEXT_PREFIX + base64.b64encode(self.seal(data, aad)).decode()

    def open_from_text(self, value: str, aad: bytes = b"") -> bytes:
        if not value.startswith(TEXT_PREFIX):
            raise SealingError("not a sealed text value (no wsl1: prefix)")
        return self.open(base64.b64decode(value[len(TEXT_PREFIX):]), aad)

    def check(self, kids: Iterable[str], where: str) -> None:
        """Start-up check of a store: every key id its records use must be in the ring."""
        missing = sorted(set(kids) - set(self.kids))
        if missing:
            raise SealingError(f"{where} holds records sealed under key id(s) {', '.join(missing)}, which "
                               f"{self.source} does not hold (it holds {', '.join(self.kids)}): a wrong data key, "
                               "or an old key removed before `warden keys rotate-data-key` re-sealed everything")


def is_sealed(blob: bytes | bytearray | memoryview) -> bool:
    return bytes(blob[:len(MAGIC)]) == MAGIC


def kid_of(blob: bytes) -> str:
    """The key id a sealed value names (no key needed)."""
    return blob[len(MAGIC):len(MAGIC) + KID_BYTES].hex()


def refuse_sealed_without_key(kids: Iterable[str], where: str) -> None:
    """A store holding sealed records opened with encryption off: stop, rather than serve what cannot open."""
    found = sorted(set(kids))
    if found:
        raise SealingError(f"{where} holds records sealed under key id(s) {', '.join(found)}, but encryption is "
                           "off: set encryption.enabled and the data key")
