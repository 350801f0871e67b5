"""API keys: `wk-<id>-<secret>`, stored only as SHA-256 hashes, looked up by id, compared in constant time.

Keys are random (256 bits), so a fast hash is enough: there is nothing to brute-force, and a
slow hash would cost every request. The id is public (logs, metrics, audit); the secret is not.
The keys file is shared by `warden keys` and the admin API: every change is a read-modify-write
under an exclusive lock, written to a temporary file and renamed, so a reader never sees half.
The file and its lock are 0600, and directories made for them 0700, whatever the umask: the
hashes are not secrets that unlock anything, but the tenants and key ids are nobody else's.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from proxy.governance.budgets import BudgetSettings

PREFIX = "wk-"
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True)
class StoredKey:
    id: str
    tenant: str
    sha256: str
    name: str = ""
    created_at: float = 0.0
    revoked_at: float | None = None
    source: str = "file"  # "config" keys are changed in the config, not through the API
    expires_at: float | None = None  # epoch seconds; the key stops working then
    requests_per_minute: int | None = None  # the key's own limits, inside its tenant's
    tokens_per_minute: int | None = None
    budget: dict[str, Any] | None = None  # a BudgetSettings as JSON (checked when the file is read)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def public(self) -> dict[str, Any]:
        """What the admin API and `warden keys list` show: never the hash."""
        return {k: v for k, v in asdict(self).items() if k != "sha256"}


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def compose(key_id: str) -> str:
    """A whole key with a fresh secret. Ids hold no dash, so the first dash after the prefix ends the id."""
    return f"{PREFIX}{key_id}-{secrets.token_urlsafe(32)}"


def new_key() -> tuple[str, str]:
    key_id = secrets.token_hex(6)
    return key_id, compose(key_id)


def key_id_of(key: str) -> str | None:
    if not key.startswith(PREFIX):
        return None
    key_id, dash, secret = key[len(PREFIX):].partition("-")
    return key_id if dash and key_id and secret else None


class KeyIndex:
    """The active keys by id; replaced whole on every change, so readers never see a partial update."""

    def __init__(self, keys: list[StoredKey]) -> None:
        self._by_id = {k.id: k for k in keys if k.active}

    def __len__(self) -> int:
        return len(self._by_id)

    def match(self, key: str) -> StoredKey | None:
        """The key's entry if the whole key matches; the same work is done whether the id exists or not."""
        key_id = key_id_of(key) or ""
        entry = self._by_id.get(key_id)
        ok = hmac.compare_digest(digest(key), entry.sha256 if entry else _DUMMY_HASH)
        return entry if ok and entry is not None else None


class KeysFile:
    """Blocking file I/O: the proxy calls it through a thread, the CLI directly."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mtime(self) -> float | None:
        try:
            return self.path.stat().st_mtime_ns / 1e9
        except FileNotFoundError:
            return None

    def load(self) -> list[StoredKey]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise ValueError(f"{self.path}: not valid JSON ({exc})") from None
        rows = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise ValueError(f"{self.path}: expected an object with a 'keys' list")
        try:
            keys = [StoredKey(**{**row, "source": "file"}) for row in rows]
        except TypeError as exc:
            raise ValueError(f"{self.path}: bad key entry ({exc})") from None
        for key in keys:
            if key.budget is not None:
                try:
                    BudgetSettings.model_validate(key.budget)
                except ValidationError as exc:
                    raise ValueError(f"{self.path}: key {key.id}: bad budget ({exc.errors()[0]['msg']})") from None
        return keys

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        missing = [d for d in (self.path.parent, *self.path.parent.parents) if not d.exists()]
        for directory in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(directory, 0o700)
            os.chmod(directory, 0o700)  # mkdir's mode is cut by the umask
        fd = os.open(self.path.with_suffix(self.path.suffix + ".lock"), os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def update(self, change: Callable[[list[StoredKey]], list[StoredKey]]) -> list[StoredKey]:
        with self._locked():
            keys = change(self.load())
            rows = [{k: v for k, v in asdict(key).items() if k != "source"} for key in keys]
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
            with os.fdopen(fd, "w") as out:
                json.dump({"version": 1, "keys": rows}, out, indent=1)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
            return keys

    def create(self, tenant: str, name: str = "", **terms: Any) -> tuple[str, StoredKey]:
        """`terms`: expires_at, requests_per_minute, tokens_per_minute, budget, metadata (StoredKey's fields)."""
        key_id, key = new_key()
        entry = StoredKey(key_id, tenant, digest(key), name, time.time(), **terms)
        self.update(lambda keys: [*keys, entry])
        return key, entry

    def change(self, key_id: str, **terms: Any) -> StoredKey:
        """New terms for an active key (expiry, limits, budget, metadata); its secret stays."""
        return self._change_active(key_id, **terms)

    def rotate(self, key_id: str) -> tuple[str, StoredKey]:
        """A new secret under the same id and tenant; the old secret stops working at once."""
        key = compose(key_id)
        return key, self._change_active(key_id, sha256=digest(key), created_at=time.time())

    def revoke(self, key_id: str) -> StoredKey:
        return self._change_active(key_id, revoked_at=time.time())

    def _change_active(self, key_id: str, **fields: Any) -> StoredKey:
        """Replace fields of the active key `key_id` under the lock; KeyError when there is none."""
        found: list[StoredKey] = []

        def change(keys: list[StoredKey]) -> list[StoredKey]:
            out = []
            for k in keys:
                if k.id == key_id and k.active:
                    k = replace(k, **fields)
                    found.append(k)
                out.append(k)
            return out

        self.update(change)
        if not found:
            raise KeyError(key_id)
        return found[0]
