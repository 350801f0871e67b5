"""The telemetry writer: `emit` on the request path, batched inserts and the spool behind it.

- `emit(table, row)` appends to a bounded in-memory buffer and returns: O(1), never blocks,
  never awaits, so the store's health cannot reach request latency.
- The flush task wakes every `flush_interval_s`, or at once when a table holds `batch_rows`,
  and writes what is buffered in batches of up to `batch_rows`: one insert per table per
  interval at moderate rates, which is what keeps ClickHouse's part count low. Rows become
  columns on the writer's I/O thread, overlapping the previous batch's insert.
- A batch goes to the store only while the spool is empty; otherwise, or when the insert fails
  or outlasts `insert_timeout_s`, it goes to the spool, so order holds. The replay task
  (replay.py) drains the spool into the store once it answers.
- Every batch's id is its `insert_deduplication_token`: a batch that landed but whose answer
  was lost is spooled, replayed under the same token, and skipped by the store.
- A hard kill loses only what was in memory (about `flush_interval_s` of rows); `stop()`
  flushes everything to the store or the spool first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry

from proxy.sealing import Sealer
from proxy.telemetry.metrics import TelemetryMetrics
from proxy.telemetry.migrate import migrate, target_for
from proxy.telemetry.quarantine import split_bad
from proxy.telemetry.replay import Replayer, outage
from proxy.telemetry.schema import TABLES, Table
from proxy.telemetry.settings import TelemetrySettings
from proxy.telemetry.spool import Entry, Spool
from proxy.telemetry.store import Store, StoreError, describe, open_store

log = logging.getLogger("warden.telemetry")

T = TypeVar("T")
# A dict (left-out keys get the column's default) or, for hot tables, a tuple of every column
# in table order (events.request_row): no per-row key lookups, on the loop or the I/O thread.
Row = dict[str, Any] | tuple[Any, ...]


class TelemetryWriter:
    metrics_prefix = "warden_telemetry"  # a worker's hand-off (remote.py) counts under its own names

    def __init__(
        self,
        settings: TelemetrySettings,
        registry: CollectorRegistry,
        *,
        connect: Callable[[], Awaitable[Store]] | None = None,
        retry_s: tuple[float, float] = (0.25, 5.0),
        sealer: Sealer | None = None,
    ) -> None:
        self.settings = settings
        self.sealer = sealer  # seals the spool (encryption at rest, proxy/sealing.py)
        self.target = target_for(settings)
        self.tables: dict[str, Table] = TABLES
        self._defaults = {t: [(c.name, c.default) for c in spec.columns] for t, spec in self.tables.items()}
        self._connect_fn = connect or (lambda: open_store(settings.dsn, timeout_s=settings.insert_timeout_s))
        self.retry_s = retry_s
        self.metrics = TelemetryMetrics(registry, self.tables, self, self.metrics_prefix)
        self.store: Store | None = None
        self.spool: Spool | None = None
        self._buffers: dict[str, list[Row]] = {t: [] for t in self.tables}
        self.buffered_rows = 0
        self._id_prefix = uuid.uuid4().hex[:16]
        self._seq = 0
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warden-telemetry-io")
        self._wake = asyncio.Event()
        self.spooled = asyncio.Event()  # set after each append; the replayer waits on it
        self.spool_empty = asyncio.Event()
        # Read by the scrape-time collector; the spool's state is mirrored here after each I/O call.
        self.spool_pending = False
        self.spool_bytes = 0
        self.spool_full = False
        self._store_up: bool | None = None  # unknown until the first connection attempt
        self._dropping_buffer = False
        self._closing = False
        self._closed = False
        self._replayer = Replayer(self)
        self._tasks: list[asyncio.Task[None]] = []

    # -- the request path ----------------------------------------------------------------------

    def emit(self, table: str, row: Row) -> None:
        """Queue one row (the writer owns the dict from here on); `ts` defaults to now, in ms."""
        buffer = self._buffers[table]
        if self._closed or self.buffered_rows >= self.settings.max_buffer_rows:
            self._drop_buffer(table)
            return
        if isinstance(row, dict) and "ts" not in row:
            row["ts"] = time.time_ns() // 1_000_000
        buffer.append(row)
        self.buffered_rows += 1
        if len(buffer) >= self.settings.batch_rows:
            self._wake.set()

    def _drop_buffer(self, table: str) -> None:
        reason = "closed" if self._closed else "buffer_full"
        self.metrics.dropped.labels(table, reason).inc()
        if not self._dropping_buffer:
            self._dropping_buffer = True
            log.error("telemetry: dropping %s rows (%s): %d rows already wait in memory; the writer cannot keep up",
                      table, reason, self.buffered_rows)

    @property
    def store_up(self) -> bool:
        return bool(self._store_up)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the spool (exclusive), connect and migrate; an unreachable server is retried later."""
        try:
            self.spool = await self.io(lambda: Spool(Path(self.settings.spool_dir), self.settings.spool_max_bytes,
                                                     sealer=self.sealer))
            await self.io(self.sync_spool_state)
            await self.connect()
        except BaseException:
            await self._close_io()
            raise
        if self.spool_pending:
            log.info("telemetry: %d bytes of spooled batches from an earlier run will be replayed", self.spool_bytes)
        self._tasks = [
            asyncio.create_task(self._flush_loop(), name="telemetry-flush"),
            asyncio.create_task(self._replayer.run(), name="telemetry-replay"),
        ]

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Flush every buffered row (to the store, or the spool), give replay a moment, then close."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        self._closing = True
        self._wake.set()
        flush = self._tasks[0] if self._tasks else None
        try:
            if flush is not None:
                await asyncio.wait_for(asyncio.shield(flush), timeout=max(0.0, deadline - self._now()))
            if self.spool_pending and self.store_up:
                await asyncio.wait_for(self.spool_empty.wait(), timeout=max(0.0, deadline - self._now()))
        except TimeoutError:
            log.warning("telemetry: shutdown deadline reached; what is not in the store stays in the spool")
        finally:
            self._closed = True
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []
            if self.store is not None:
                with contextlib.suppress(Exception):
                    await self.store.close()
                self.store = None
            await self._close_io()

    async def _close_io(self) -> None:
        if self.spool is not None:
            await self.io(self.spool.close)
            self.spool = None
        await asyncio.to_thread(self._io.shutdown, True)  # waits for appends queued by a cancelled flush

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        """Run on the writer's one I/O thread: spool files, row-to-column conversion."""
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    async def connect(self) -> bool:
        """Open the store and apply migrations; False (logged) when it cannot be reached now."""
        try:
            store = await self._connect_fn()
        except StoreError:
            raise
        except Exception as exc:
            self.store_down(exc)
            return False
        try:
            if self.settings.auto_migrate:
                await migrate(store, self.target)
        except Exception as exc:
            self.store_down(exc)
            with contextlib.suppress(Exception):
                await store.close()
            return False
        self.store = store
        self.store_back()
        return True

    def store_down(self, exc: BaseException) -> None:
        if self._store_up is not False:  # once per outage, not once per retry
            log.warning("telemetry store %s unavailable (%s: %s); spooling to %s until it is back",
                        describe(self.settings.dsn), type(exc).__name__, str(exc)[:300], self.settings.spool_dir)
        self._store_up = False

    def store_back(self) -> None:
        if self._store_up is not True:
            log.info("telemetry store %s is up", describe(self.settings.dsn))
        self._store_up = True

    # -- flushing ----------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.flush_interval_s)
            self._wake.clear()
            await self._flush_pass()
        while any(self._buffers.values()):
            await self._flush_pass()

    async def _flush_pass(self) -> None:
        try:
            await self._flush_tables()
        except Exception:  # a bug must not end telemetry for the life of the process
            log.exception("telemetry: flushing failed; the rows of that batch are lost")

    async def _flush_tables(self) -> None:
        """Everything buffered, in batches of `batch_rows`, table by table.

        The next batch becomes columns (I/O thread) while this one is inserted (store thread):
        the two overlap, which is most of the writer's throughput. `_buffered` drops only as
        batches leave for the store or the spool, so in-flight rows still count against the cap.
        """
        size = self.settings.batch_rows
        jobs: list[tuple[str, str, list[Row]]] = []
        for table, buffer in list(self._buffers.items()):
            if buffer:
                self._buffers[table] = []
                for start in range(0, len(buffer), size):
                    self._seq += 1
                    jobs.append((f"{self._id_prefix}-{self._seq}", table, buffer[start:start + size]))
        if not jobs:
            return
        loop = asyncio.get_running_loop()
        ahead = loop.run_in_executor(self._io, self._to_entry, *jobs[0])
        left = sum(len(rows) for _, _, rows in jobs)
        try:
            for i in range(len(jobs)):
                entry = await ahead
                if i + 1 < len(jobs):
                    ahead = loop.run_in_executor(self._io, self._to_entry, *jobs[i + 1])
                await self._write(entry)
                self.buffered_rows -= entry.rows
                left -= entry.rows
        finally:
            ahead.cancel()
            self.buffered_rows -= left  # rows of batches a failure or a cancellation cut off
        if self.buffered_rows < self.settings.max_buffer_rows // 2:
            self._dropping_buffer = False

    async def write_rows(self, batch_id: str, table: str, rows: list[Row]) -> None:
        """A batch whose id another process chose (the telemetry process, for a worker): to the store or the spool.

        It is marked `attempted` so that, if it is spooled, replay inserts it alone under this id: the
        worker may hand the same batch over again (its copy was not acknowledged when a process died),
        and only the same token makes the store skip it.
        """
        entry = await self.io(self._to_entry, batch_id, table, rows)
        entry.attempted = True
        await self.write_entry(entry)

    async def write_entry(self, entry: Entry) -> None:
        """Insert under `entry.id`, or spool it (see `write_rows`); returns once it is in one or the other."""
        await self._write(entry)

    def _to_entry(self, batch_id: str, table: str, rows: list[Row]) -> Entry:
        """Rows to columns: the hot loop of a flush, on the I/O thread."""
        defaults = self._defaults[table]
        dicts = [row for row in rows if isinstance(row, dict)]
        if len(dicts) == len(rows):
            columns = [[row.get(name, default) for row in dicts] for name, default in defaults]
        else:
            whole = [row if isinstance(row, tuple) else tuple(row.get(n, d) for n, d in defaults) for row in rows]
            columns = [list(column) for column in zip(*whole, strict=True)]
            if len(columns) != len(defaults):
                raise ValueError(f"{table} rows hold {len(columns)} values, the table {len(defaults)} columns")
        return Entry(batch_id, table, list(self.tables[table].column_names), columns)

    async def _write(self, entry: Entry) -> None:
        if self.store is not None and not self.spool_pending:
            try:
                await self.insert(entry, entry.id)
                self.metrics.written.labels(entry.table).inc(entry.rows)
                return
            except asyncio.CancelledError:
                entry.attempted = True
                self._io.submit(self._append, entry)  # not awaited: we are being cancelled; stop() waits for it
                raise
            except Exception as exc:
                entry.attempted = True  # it may have landed: replay it alone, with the same token
                if outage(exc):
                    self.store_down(exc)
                elif await self._quarantine(entry, exc):
                    return
                else:
                    log.warning("telemetry: the store refused a %s batch (%s); spooled, to be retried",
                                entry.table, str(exc)[:300])
        await self.spool_entry(entry)

    async def _quarantine(self, entry: Entry, exc: Exception) -> bool:
        """Cut the rows no store can take out of a refused batch and write the rest; False if none is bad.

        Only the error's type is logged: its text may quote a row, and rows hold prompts and outputs.
        """
        good, bad = await self.io(split_bad, entry, self.tables[entry.table])
        if not bad.rows:
            return False
        assert self.spool is not None
        await self.io(self.spool.reject_rows, bad)
        self.metrics.rejected.labels(entry.table).inc(bad.rows)
        log.error("telemetry: %d of %d %s rows hold values the store cannot take (%s); moved them to %s and "
                  "wrote the rest", bad.rows, entry.rows, entry.table, type(exc).__name__,
                  self.spool.directory / "rejected.spool")
        if good.rows:
            await self._write(good)
        return True

    async def insert(self, entry: Entry, token: str) -> None:
        assert self.store is not None
        types = self.tables[entry.table].wire_types(entry.names)
        started = time.perf_counter()
        await asyncio.wait_for(
            self.store.insert(self.target.database, entry.table, entry.names, types, entry.columns, token),
            self.settings.insert_timeout_s,
        )
        self.metrics.inserts.labels(entry.table).inc()
        self.metrics.insert_seconds.labels(entry.table).observe(time.perf_counter() - started)
        self.store_back()

    async def spool_entry(self, entry: Entry) -> None:
        if await self.io(self._append, entry):
            self.metrics.spooled.labels(entry.table).inc(entry.rows)
            self.spooled.set()
            self.spool_drained()
            return
        self.metrics.dropped.labels(entry.table, "spool_full").inc(entry.rows)
        if not self.spool_full:
            self.spool_full = True
            log.error(
                "telemetry spool %s is FULL (%d bytes, cap telemetry.spool_max_bytes=%d) while the store %s is "
                "away: DROPPING %d %s rows and every batch after it until replay frees space; alert "
                "warden_telemetry_spool_full=1", self.settings.spool_dir, self.spool_bytes,
                self.settings.spool_max_bytes, describe(self.settings.dsn), entry.rows, entry.table,
            )

    def spool_drained(self) -> None:
        """Replay freed space: a full spool takes batches again (the alert clears)."""
        if self.spool_full:
            self.spool_full = False
            log.warning("telemetry spool %s has room again; no longer dropping rows", self.settings.spool_dir)

    # -- spool calls (on the I/O thread) ------------------------------------------------------

    def _append(self, entry: Entry) -> bool:
        assert self.spool is not None
        try:
            ok = self.spool.append(self.spool.encode(entry))
        except OSError as exc:  # the spool's own disk is full or failing: same outcome as the cap
            log.error("telemetry spool %s cannot be written: %s", self.settings.spool_dir, exc)
            ok = False
        self.sync_spool_state()
        return ok

    def sync_spool_state(self) -> None:
        """Publish the spool's state to the loop side (plain attribute writes, read by the loop)."""
        assert self.spool is not None
        self.spool_pending = self.spool.pending
        self.spool_bytes = self.spool.size
