"""Draining the spool into the store, in order, without duplicates, once the store answers.

A replay step reads a range of records from the cursor and plans its inserts: consecutive
records of one table merge into inserts of up to `batch_rows` rows (an outage's many small
batches must not come back as many small parts), except records whose first insert was tried
and may have landed: those go alone, under their original token. The plan is saved in the
spool (the intent) before the first insert, so a replay cut short by a crash repeats the same
inserts under the same tokens and the store skips what it already has.

A plan that keeps failing with a non-transient error while the store answers pings is bad data,
not an outage: it is retried record by record, and a record still refused is moved to
`rejected.spool`. Timeouts, network errors and overload (TOO_MANY_PARTS...) are only waited out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from proxy.telemetry.metrics import TelemetryMetrics
from proxy.telemetry.migrate import migrate
from proxy.telemetry.quarantine import split_bad
from proxy.telemetry.schema import TABLES, Target
from proxy.telemetry.settings import TelemetrySettings
from proxy.telemetry.spool import Entry, Record, Spool
from proxy.telemetry.store import Store, StoreError

T = TypeVar("T")


class Host(Protocol):
    """The writer's side of replay (proxy/telemetry/writer.py): its store, spool, events and I/O thread.

    Declared here so that the replayer states what it shares with the writer, and neither imports the other.
    """

    settings: TelemetrySettings
    target: Target
    metrics: TelemetryMetrics
    store: Store | None
    spool: Spool | None
    retry_s: tuple[float, float]
    spooled: asyncio.Event
    spool_empty: asyncio.Event
    spool_pending: bool

    async def io(self, fn: Callable[..., T], *args: Any) -> T: ...

    async def connect(self) -> bool: ...

    def store_down(self, exc: BaseException) -> None: ...

    async def insert(self, entry: Entry, token: str) -> None: ...

    def spool_drained(self) -> None: ...

    def sync_spool_state(self) -> None: ...

log = logging.getLogger("warden.telemetry.replay")

MAX_RECORDS = 512  # records read per replay step (memory bound, with rows <= batch_rows + one record)
ATTEMPTS = 3  # failures with a healthy store before a plan is split, or a lone record rejected


# Server errors that say "not now" rather than "not this": retried for as long as they last.
TRANSIENT = ("TOO_MANY_PARTS", "MEMORY_LIMIT_EXCEEDED", "TIMEOUT_EXCEEDED", "TOO_MANY_SIMULTANEOUS_QUERIES",
             "NETWORK_ERROR", "SOCKET_TIMEOUT", "TABLE_IS_READ_ONLY", "READONLY", "KEEPER_EXCEPTION",
             "ALL_CONNECTION_TRIES_FAILED", "QUERY_WAS_CANCELLED", "ABORTED", "HTTP status 5", "HTTP status 429")


def outage(exc: BaseException) -> bool:
    """Timeouts, network errors and overload are outages (wait), never a reason to reject data."""
    from clickhouse_connect.driver.exceptions import OperationalError

    return isinstance(exc, TimeoutError | OSError | OperationalError) or any(t in str(exc) for t in TRANSIENT)


def plan(records: list[Record], batch_rows: int, solo: bool) -> list[list[int]]:
    """Groups of record indexes; within a table, groups keep the records' order."""
    groups: list[list[int]] = []
    open_group: dict[tuple[str, tuple[str, ...]], tuple[list[int], int]] = {}
    for i, record in enumerate(records):
        entry = record.entry
        key = (entry.table, tuple(entry.names))
        if solo or entry.attempted:
            open_group.pop(key, None)
            groups.append([i])
            continue
        current = open_group.get(key)
        if current is None or current[1] + entry.rows > batch_rows:
            current = ([], 0)
            groups.append(current[0])
        current[0].append(i)
        open_group[key] = (current[0], current[1] + entry.rows)
    return groups


def merged(records: list[Record]) -> tuple[Entry, str]:
    """One entry for a group, and its token: a lone record keeps its own id."""
    first = records[0].entry
    if len(records) == 1:
        return first, first.id
    columns: list[list[Any]] = [[] for _ in first.names]
    for record in records:
        for column, values in zip(columns, record.entry.columns, strict=True):
            column.extend(values)
    token = "m-" + hashlib.sha256(",".join(r.entry.id for r in records).encode()).hexdigest()[:32]
    return Entry(token, first.table, first.names, columns), token


class Replayer:
    def __init__(self, writer: Host) -> None:
        self.w = writer
        self._failures = 0
        self._done: set[int] = set()  # groups of the current intent already inserted by this process

    async def run(self) -> None:
        w = self.w
        delay = w.retry_s[0]
        while True:
            w.spooled.clear()
            if not w.spool_pending:
                w.spool_empty.set()
                await w.spooled.wait()
                continue
            w.spool_empty.clear()
            if w.store is None and not await self._connect():
                await asyncio.sleep(delay)
                delay = min(delay * 2, w.retry_s[1])
                continue
            try:
                await self.step()
                delay = w.retry_s[0]
            except Exception as exc:
                if outage(exc) or not await self._healthy():
                    w.store_down(exc)
                elif not await self._schema_gone(exc):
                    await self._bad_data(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, w.retry_s[1])

    async def _connect(self) -> bool:
        try:
            return await self.w.connect()
        except StoreError as exc:
            log.error("telemetry: %s", exc)
            return False

    async def _healthy(self) -> bool:
        assert self.w.store is not None
        try:
            return await asyncio.wait_for(self.w.store.ping(), self.w.settings.insert_timeout_s)
        except Exception:
            return False

    async def step(self) -> None:
        """Replay one range: plan (or resume the saved plan), insert each group, acknowledge."""
        w = self.w
        spool = w.spool
        assert spool is not None
        intent = spool.intent
        if intent is None:
            records = await w.io(spool.read, MAX_RECORDS, w.settings.batch_rows)
            if not records:
                await w.io(w.sync_spool_state)
                return
            intent = {"end": list(records[-1].end), "groups": plan(records, w.settings.batch_rows, False),
                      "solo": False, "skip": []}
            await w.io(spool.set_intent, intent)
            self._done = set()
        else:
            end = (int(intent["end"][0]), int(intent["end"][1]))
            records = await w.io(lambda: spool.read(0, 0, until=end))
        for index, group in enumerate(intent["groups"]):
            if index in self._done or index in intent["skip"]:
                continue
            entry, token = merged([records[i] for i in group])
            await w.insert(entry, token)
            self._done.add(index)
            self._failures = 0
            w.metrics.written.labels(entry.table).inc(entry.rows)
            w.metrics.replayed.labels(entry.table).inc(entry.rows)
        await w.io(spool.ack, (int(intent["end"][0]), int(intent["end"][1])))
        await w.io(w.sync_spool_state)
        self._done = set()
        w.spool_drained()

    async def _schema_gone(self, exc: Exception) -> bool:
        """A server that lost its tables (a fresh volume, a DROP) gets them back; the rows wait."""
        if not any(code in str(exc) for code in ("UNKNOWN_TABLE", "UNKNOWN_DATABASE")):
            return False
        if self.w.settings.auto_migrate and self.w.store is not None:
            log.warning("telemetry replay: the store has lost the telemetry tables; migrating again")
            with contextlib.suppress(Exception):
                await migrate(self.w.store, self.w.target)
        return True

    async def _quarantine(self, record: Record) -> bool:
        """A refused record with rows no store can take: those rows to quarantine, the rest inserted."""
        spool = self.w.spool
        assert spool is not None and self.w.store is not None
        good, bad = await self.w.io(split_bad, record.entry, TABLES[record.entry.table])
        if not bad.rows:
            return False
        if good.rows:
            try:
                await self.w.insert(good, good.id)
            except Exception:
                return False  # still refused: the whole record goes to rejected.spool
            self.w.metrics.written.labels(good.table).inc(good.rows)
            self.w.metrics.replayed.labels(good.table).inc(good.rows)
        await self.w.io(spool.reject_rows, bad)
        self.w.metrics.rejected.labels(bad.table).inc(bad.rows)
        log.error("telemetry replay: %d of %d %s rows hold values the store cannot take; moved them to %s",
                  bad.rows, record.entry.rows, bad.table, spool.directory / "rejected.spool")
        return True

    async def _bad_data(self, exc: Exception) -> None:
        """The store is up but refuses this plan: split it; then reject the lone record it refuses."""
        self._failures += 1
        spool = self.w.spool
        intent = spool.intent if spool is not None else None
        if spool is None or intent is None or self._failures < ATTEMPTS:
            return
        self._failures = 0
        end = (int(intent["end"][0]), int(intent["end"][1]))
        records = await self.w.io(lambda: spool.read(0, 0, until=end))
        if not intent["solo"]:
            log.warning("telemetry replay: the store refuses a merged insert (%s); retrying record by record", exc)
            intent = {**intent, "groups": plan(records, 1, True), "solo": True, "skip": []}
            self._done = set()
            await self.w.io(spool.set_intent, intent)
            return
        failing = next(i for i in range(len(intent["groups"])) if i not in self._done and i not in intent["skip"])
        record = records[intent["groups"][failing][0]]
        if await self._quarantine(record):
            await self.w.io(spool.set_intent, {**intent, "skip": [*intent["skip"], failing]})
            return
        await self.w.io(spool.reject, record)
        await self.w.io(spool.set_intent, {**intent, "skip": [*intent["skip"], failing]})
        self.w.metrics.rejected.labels(record.entry.table).inc(record.entry.rows)
        log.error("telemetry replay: the store refused %d %s rows %d times while healthy (%s); moved them to %s",
                  record.entry.rows, record.entry.table, ATTEMPTS, str(exc)[:300],
                  spool.directory / "rejected.spool")
        with contextlib.suppress(Exception):
            await self.w.io(self.w.sync_spool_state)
