"""The embedded review store: one SQLite file, touched only from one dedicated thread.

sqlite3 calls block, so every operation is a small synchronous function run on a single-thread
executor: the event loop never waits on the disk, and operations run one at a time in the
order they were asked, which makes each claim and label atomic without locks.

The file holds reviewers' text (raw outputs too, when `raw_text` is on) and password hashes, so
it is made 0600 in 0700 directories with explicit modes, whatever the umask: the file is
created before SQLite opens it, and SQLite gives its -wal and -shm files the database's mode
(they are chmodded too, in case they predate this).

With encryption at rest (proxy/sealing.py) the text columns (prompt, output, raw output,
findings, whose explanations may quote the text) hold sealed BLOBs, bound to their item and
column; sealing and opening run on the store's thread like every other call. Rows written before
encryption was on stay readable as text until `warden keys rotate-data-key` seals them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from proxy.review.estimates import Reviewed, outcome_of
from proxy.review.store import EstimateInputs, Filters, Item, Label, findings_from_json
from proxy.sealing import Sealer, SealingError, kid_of, refuse_sealed_without_key

T = TypeVar("T")
log = logging.getLogger("warden.review.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY, created REAL NOT NULL, request_id TEXT, tenant TEXT, model TEXT, route TEXT,
    backend TEXT, model_version TEXT, stratum TEXT, probability REAL NOT NULL, verdict TEXT,
    prompt TEXT, output TEXT, raw_output TEXT, findings TEXT, detectors TEXT,
    template_id TEXT, template_version TEXT, required INTEGER NOT NULL, label_count INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT, lease_until REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS items_open ON items (label_count, created);
CREATE TABLE IF NOT EXISTS labels (
    item_id TEXT NOT NULL REFERENCES items(id), reviewer TEXT NOT NULL, label TEXT NOT NULL,
    categories TEXT NOT NULL, comment TEXT NOT NULL, ts REAL NOT NULL, PRIMARY KEY (item_id, reviewer)
);
CREATE TABLE IF NOT EXISTS traffic (
    model TEXT NOT NULL, stratum TEXT NOT NULL, seen INTEGER NOT NULL, PRIMARY KEY (model, stratum)
);
CREATE TABLE IF NOT EXISTS ended_sessions (nonce TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS credentials (
    reviewer TEXT PRIMARY KEY, replaces TEXT NOT NULL, password_hash TEXT NOT NULL
);
"""
_COLUMNS = ("id, created, request_id, tenant, model, route, backend, model_version, stratum, probability, verdict, "
            "prompt, output, findings, template_id, template_version, required, raw_output IS NOT NULL, "
            "lease_owner, lease_until")
# Claimable by reviewer ?1 at time ?2.
_OPEN = ("label_count < required AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.item_id = items.id AND l.reviewer = ?1)"
         " AND (lease_owner IS NULL OR lease_until < ?2 OR lease_owner = ?1)")


def _private_file(path: Path) -> None:
    """Creates `path` (and missing parent directories) private to this user, or makes it so."""
    missing = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
        os.chmod(directory, 0o700)  # mkdir's mode is cut by the umask
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chmod(path, 0o600)
    for suffix in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", 0o600)


SEALED = ("prompt", "output", "raw_output", "findings")
# The key ids in use, read from the envelopes (bytes 5-12 of each sealed BLOB), for the start-up check.
_KIDS = " UNION ".join(f"SELECT DISTINCT hex(substr({c}, 5, 8)) FROM items WHERE typeof({c}) = 'blob'" for c in SEALED)


def _filter_sql(filters: Filters) -> tuple[str, list[Any]]:
    sql, args = "", list[Any]()
    if filters.stratum:
        sql, args = sql + " AND stratum = ?", [*args, filters.stratum]
    if filters.model:
        sql, args = sql + " AND model = ?", [*args, filters.model]
    if filters.detector:
        sql, args = sql + " AND instr(detectors, ',' || ? || ',') > 0", [*args, filters.detector]
    return sql, args


class SQLiteStore:
    def __init__(self, path: str, sealer: Sealer | None = None) -> None:
        self.path = path
        self.sealer = sealer
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warden-review-db")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._db is None:
                raise RuntimeError("the review store is not open")
            with self._db:  # one transaction per operation
                return fn(self._db)

        return await asyncio.get_running_loop().run_in_executor(self._io, call)

    async def open(self) -> None:
        def connect() -> None:
            if self.path != ":memory:":
                _private_file(Path(self.path))
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            if self.path != ":memory:":
                _private_file(Path(self.path))  # the -wal and -shm files exist now
            db.isolation_level = "DEFERRED"
            try:
                self._check_keys(db)
            except SealingError:
                db.close()
                raise
            self._db = db

        await asyncio.get_running_loop().run_in_executor(self._io, connect)

    async def close(self) -> None:
        def disconnect() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._io, disconnect)
        self._io.shutdown(wait=True)

    # -- sealing (on the store's thread) -------------------------------------------------------

    def _check_keys(self, db: sqlite3.Connection) -> None:
        """A wrong or missing data key stops the start, naming the key ids the records need."""
        kids = [str(k).lower() for (k,) in db.execute(_KIDS)]
        where = f"the review store {self.path}"
        if self.sealer is None:
            refuse_sealed_without_key(kids, where)
            return
        self.sealer.check(kids, where)
        plain = db.execute("SELECT count(*) FROM items WHERE typeof(prompt) = 'text'").fetchone()[0]
        if plain:
            log.warning("%s: %d item(s) from before encryption was on are still plaintext; "
                        "`warden keys rotate-data-key` seals them", where, plain)

    def _seal(self, item_id: str, column: str, value: str | None) -> str | bytes | None:
        if value is None or self.sealer is None:
            return value
        return self.sealer.seal_text(value, f"review/{item_id}/{column}".encode())

    def _open(self, item_id: str, column: str, value: str | bytes | None) -> str | None:
        if not isinstance(value, bytes):
            return value
        if self.sealer is None:
            raise SealingError(f"the review store {self.path} holds sealed text but encryption is off")
        return self.sealer.open_text(value, f"review/{item_id}/{column}".encode())

    async def add(self, item: Item, raw_output: str | None) -> None:
        def insert(db: sqlite3.Connection) -> None:
            seal = self._seal
            row = (item.id, item.created, item.request_id, item.tenant, item.model, item.route, item.backend,
                   item.model_version, item.stratum, item.probability, item.verdict,
                   seal(item.id, "prompt", item.prompt), seal(item.id, "output", item.output),
                   seal(item.id, "raw_output", raw_output), seal(item.id, "findings", item.findings_json()),
                   "," + ",".join(item.detectors) + ",", item.template_id, item.template_version, item.required)
            db.execute(
                "INSERT INTO items (id, created, request_id, tenant, model, route, backend, model_version, stratum, "
                "probability, verdict, prompt, output, raw_output, findings, detectors, template_id, "
                "template_version, required) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row)

        await self._run(insert)

    async def key_ids(self) -> Counter[str]:
        """Items per key id that sealed them (`plaintext` for unsealed ones): what rotation still has to do."""
        def count(db: sqlite3.Connection) -> Counter[str]:
            return Counter(kid_of(p) if isinstance(p, bytes) else "plaintext"
                           for (p,) in db.execute("SELECT prompt FROM items"))

        return await self._run(count)

    async def reseal(self, batch: int = 200) -> int:
        """Re-seal up to `batch` items not under the current key; 0 when none is left. One short transaction."""
        sealer = self.sealer
        if sealer is None:
            raise SealingError("re-sealing needs encryption.enabled and the data key")
        current = bytes.fromhex(sealer.current)

        def reseal(db: sqlite3.Connection) -> int:
            stale = " OR ".join(f"(typeof({c}) = 'text' OR (typeof({c}) = 'blob' AND substr({c}, 5, 8) != ?1))"
                                for c in SEALED)
            rows = db.execute(f"SELECT id, {', '.join(SEALED)} FROM items WHERE {stale} LIMIT {int(batch)}",
                              (current,)).fetchall()
            for item_id, *values in rows:
                fresh = [self._seal(item_id, c, self._open(item_id, c, v)) for c, v in zip(SEALED, values, strict=True)]
                db.execute(f"UPDATE items SET {', '.join(c + ' = ?' for c in SEALED)} WHERE id = ?",
                           (*fresh, item_id))
            return len(rows)

        return await self._run(reseal)

    async def add_counts(self, counts: Counter[tuple[str, str]]) -> None:
        rows = [(model, stratum, n) for (model, stratum), n in counts.items()]
        await self._run(lambda db: db.executemany(
            "INSERT INTO traffic (model, stratum, seen) VALUES (?, ?, ?) "
            "ON CONFLICT (model, stratum) DO UPDATE SET seen = seen + excluded.seen", rows))

    def _item(self, db: sqlite3.Connection, row: tuple[Any, ...]) -> Item:
        (item_id, created, request_id, tenant, model, route, backend, version, stratum, pi, verdict, prompt, output,
         findings, template_id, template_version, required, has_raw, lease_owner, lease_until) = row
        prompt, output = self._open(item_id, "prompt", prompt) or "", self._open(item_id, "output", output) or ""
        findings = self._open(item_id, "findings", findings) or ""
        item = Item(item_id, created, request_id, tenant, model, route, backend, version, stratum, pi, verdict, prompt,
                    output, findings=findings_from_json(findings), template_id=template_id or "",
                    template_version=template_version or "", required=required, has_raw=bool(has_raw),
                    lease_owner=lease_owner, lease_until=lease_until)
        item.labels = [Label(r, lab, tuple(json.loads(c)), com, ts) for r, lab, c, com, ts in db.execute(
            "SELECT reviewer, label, categories, comment, ts FROM labels WHERE item_id = ? ORDER BY ts", (item.id,))]
        return item

    async def get(self, item_id: str) -> Item | None:
        def get(db: sqlite3.Connection) -> Item | None:
            row = db.execute(f"SELECT {_COLUMNS} FROM items WHERE id = ?", (item_id,)).fetchone()
            return None if row is None else self._item(db, row)

        return await self._run(get)

    async def queue(self, reviewer: str, filters: Filters, now: float, limit: int = 50) -> list[Item]:
        where, args = _filter_sql(filters)

        def queue(db: sqlite3.Connection) -> list[Item]:
            rows = db.execute(f"SELECT {_COLUMNS} FROM items WHERE {_OPEN}{where} ORDER BY created LIMIT {int(limit)}",
                              [reviewer, now, *args]).fetchall()
            return [self._item(db, r) for r in rows]

        return await self._run(queue)

    async def claim(self, item_id: str, reviewer: str, now: float, lease_s: float) -> bool:
        return await self._run(lambda db: db.execute(
            f"UPDATE items SET lease_owner = ?1, lease_until = ?3 WHERE {_OPEN} AND id = ?4",
            (reviewer, now, now + lease_s, item_id)).rowcount == 1)

    async def claim_next(self, reviewer: str, filters: Filters, now: float, lease_s: float) -> Item | None:
        where, args = _filter_sql(filters)

        def claim_next(db: sqlite3.Connection) -> Item | None:
            # Items this reviewer already holds come first, so "next" never strands a lease.
            row = db.execute(f"SELECT id FROM items WHERE {_OPEN}{where} ORDER BY lease_owner IS NULL, created LIMIT 1",
                             [reviewer, now, *args]).fetchone()
            if row is None:
                return None
            db.execute("UPDATE items SET lease_owner = ?, lease_until = ? WHERE id = ?",
                       (reviewer, now + lease_s, row[0]))
            full = db.execute(f"SELECT {_COLUMNS} FROM items WHERE id = ?", (row[0],)).fetchone()
            return self._item(db, full)

        return await self._run(claim_next)

    async def release(self, item_id: str, reviewer: str) -> None:
        await self._run(lambda db: db.execute(
            "UPDATE items SET lease_owner = NULL, lease_until = 0 WHERE id = ? AND lease_owner = ?",
            (item_id, reviewer)))

    async def label(self, item_id: str, reviewer: str, label: Label) -> bool:
        def put(db: sqlite3.Connection) -> bool:
            held = db.execute("UPDATE items SET lease_owner = NULL, lease_until = 0, label_count = label_count + 1 "
                              "WHERE id = ? AND lease_owner = ? AND label_count < required", (item_id, reviewer))
            if held.rowcount != 1:
                return False
            db.execute("INSERT INTO labels (item_id, reviewer, label, categories, comment, ts) VALUES (?,?,?,?,?,?)",
                       (item_id, reviewer, label.label, json.dumps(list(label.categories)), label.comment, label.ts))
            return True

        return await self._run(put)

    async def pending(self) -> int:
        return int(await self._run(lambda db: db.execute(
            "SELECT count(*) FROM items WHERE label_count < required").fetchone()[0]))

    async def raw_output(self, item_id: str) -> str | None:
        def raw(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT raw_output FROM items WHERE id = ?", (item_id,)).fetchone()
            return None if row is None else self._open(item_id, "raw_output", row[0])

        return await self._run(raw)

    async def estimate_inputs(self) -> EstimateInputs:
        def read(db: sqlite3.Connection) -> EstimateInputs:
            traffic: dict[str, int] = {}
            for model, seen in db.execute("SELECT model, SUM(seen) FROM traffic GROUP BY model"):
                traffic[model] = int(seen)
            labels: dict[str, list[str]] = {}
            for item_id, lab in db.execute("SELECT item_id, label FROM labels ORDER BY ts"):
                labels.setdefault(item_id, []).append(lab)
            items, pairs = [], []
            for item_id, model, stratum, pi, findings in db.execute(
                    "SELECT id, model, stratum, probability, findings FROM items"):
                mine = labels.get(item_id, [])
                opened = self._open(item_id, "findings", findings) or ""
                fired = frozenset(f.detector for f in findings_from_json(opened) if f.action != "allow")
                items.append(Reviewed(model, stratum, pi, outcome_of(mine), fired))
                if len(mine) >= 2:
                    pairs.append((mine[0], mine[1]))
            return EstimateInputs(traffic, items, pairs)

        return await self._run(read)

    async def facets(self) -> dict[str, list[str]]:
        def read(db: sqlite3.Connection) -> dict[str, list[str]]:
            strata = [r[0] for r in db.execute("SELECT DISTINCT stratum FROM items ORDER BY 1")]
            models = [r[0] for r in db.execute("SELECT DISTINCT model FROM items ORDER BY 1")]
            detectors = sorted({d for (ds,) in db.execute("SELECT DISTINCT detectors FROM items")
                                for d in (ds or "").split(",") if d})
            return {"stratum": strata, "model": models, "detector": detectors}

        return await self._run(read)

    async def export(self) -> list[dict[str, Any]]:
        def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = []
            for row in db.execute(f"SELECT {_COLUMNS} FROM items ORDER BY created").fetchall():
                item = self._item(db, row)
                rows.append({
                    "id": item.id, "created": item.created, "request_id": item.request_id, "tenant": item.tenant,
                    "model": item.model, "route": item.route, "backend": item.backend,
                    "model_version": item.model_version, "stratum": item.stratum, "probability": item.probability,
                    "verdict": item.verdict, "prompt": item.prompt, "output": item.output,
                    "findings": json.loads(item.findings_json()), "template_id": item.template_id,
                    "template_version": item.template_version, "required_reviews": item.required,
                    "outcome": {True: "violation", False: "ok", None: ""}[outcome_of(lab.label for lab in item.labels)],
                    "labels": [{"reviewer": lab.reviewer, "label": lab.label, "categories": list(lab.categories),
                                "comment": lab.comment, "ts": lab.ts} for lab in item.labels],
                })
            return rows

        return await self._run(read)

    async def end_session(self, nonce: str, expires: float) -> None:
        def end(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM ended_sessions WHERE expires < ?", (time.time(),))
            db.execute("INSERT OR REPLACE INTO ended_sessions (nonce, expires) VALUES (?, ?)", (nonce, expires))

        await self._run(end)

    async def session_ended(self, nonce: str) -> bool:
        return await self._run(lambda db: db.execute(
            "SELECT 1 FROM ended_sessions WHERE nonce = ?", (nonce,)).fetchone() is not None)

    async def credential(self, reviewer: str, replaces: str) -> str | None:
        def read(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT password_hash FROM credentials WHERE reviewer = ? AND replaces = ?",
                             (reviewer, replaces)).fetchone()
            return None if row is None else str(row[0])

        return await self._run(read)

    async def save_credential(self, reviewer: str, replaces: str, password_hash: str) -> None:
        await self._run(lambda db: db.execute(
            "INSERT OR REPLACE INTO credentials (reviewer, replaces, password_hash) VALUES (?, ?, ?)",
            (reviewer, replaces, password_hash)))
