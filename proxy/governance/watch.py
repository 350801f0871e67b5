"""Keeps the running key index in step with the keys file, whoever changed it (CLI, another worker, the API).

The file is polled in a thread once a second, so a key revoked by `warden keys revoke` stops
working within a second in every process; a change made through this process's admin API
takes effect before the call returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from proxy.governance.keys import KeysFile, StoredKey
from proxy.tasks import TaskOwner

log = logging.getLogger("warden.governance.keys")
POLL_S = 1.0
Audit = Callable[[str, str, str, str, str, dict[str, str]], None]  # actor, action, target, tenant, outcome, details


class KeyHolder(Protocol):
    """What the watcher updates: the gate's key index (proxy/governance/gate.py), which owns the watcher."""

    def all_keys(self) -> list[StoredKey]: ...

    def set_file_keys(self, keys: list[StoredKey]) -> None: ...


class KeysWatcher:
    def __init__(self, gate: KeyHolder, path: Path, audit: Audit, poll_s: float = POLL_S) -> None:
        self.gate = gate
        self.file = KeysFile(path)
        self.audit = audit
        self.poll_s = poll_s
        self._seen: float | None = None
        self._owner = TaskOwner("keys-watch")

    async def start(self) -> None:
        await self.refresh(audit=False)
        self._owner.spawn(self._poll(), "poll")

    async def stop(self) -> None:
        await self._owner.close(0)

    async def refresh(self, *, audit: bool = True) -> None:
        mtime = await asyncio.to_thread(self.file.mtime)
        if mtime == self._seen:
            return
        try:
            keys = await asyncio.to_thread(self.file.load)
        except ValueError as exc:
            log.error("keys file not loaded, the previous keys stay in force: %s", exc)
            self._seen = mtime
            return
        self.adopt(keys, mtime, actor="keys_file" if audit else "")

    def adopt(self, keys: list[StoredKey], mtime: float | None, actor: str) -> None:
        """Make `keys` the file keys now; `actor` names who changed them for the audit trail ("" = no audit)."""
        before = {k.id: k for k in self.gate.all_keys() if k.source == "file"}
        self.gate.set_file_keys(keys)
        self._seen = mtime
        if not actor:
            return
        for key in keys:
            old = before.get(key.id)
            if old is None:
                self.audit(actor, "key_created", key.id, key.tenant, "ok", {"name": key.name})
            elif old.active and not key.active:
                self.audit(actor, "key_revoked", key.id, key.tenant, "ok", {})
            elif old.sha256 != key.sha256:
                self.audit(actor, "key_rotated", key.id, key.tenant, "ok", {})

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.refresh()
            except OSError as exc:
                log.error("keys file %s unreadable: %s", self.file.path, exc)
