"""A proxy worker's telemetry: rows handed to the telemetry process (process.py) over a local socket.

`emit` stays O(1): a row joins this loop turn's list, and one frame per turn carries the list to
the telemetry process, so rows leave the worker within a turn (a worker killed with -9 loses
only the rows of the turn it died in) and no insert, no row-to-column work runs on the worker.
Rows are kept, as rows, until the telemetry process acknowledges their epoch (stored or spooled
there; see process.py for the ids that make a second hand-over harmless).

The telemetry process away: this is the writer (writer.py) of a single Warden with the socket
as its store. Unacknowledged rows and new ones go to the worker's own spool
(`spool_dir/workers/<n>`), and replay hands the spooled batches over once the process is back,
each under the id it was first handed over with, so nothing lands twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from proxy.sealing import Sealer
from proxy.tasks import TaskOwner
from proxy.telemetry.commands import telemetry_socket
from proxy.telemetry.settings import TelemetrySettings
from proxy.telemetry.store import Rows
from proxy.telemetry.wire import ACK, BATCH, CLOSE, HELLO, METRICS, PING, QUERY, Link, rows_frame
from proxy.telemetry.writer import Row, TelemetryWriter


def worker_spool(settings: TelemetrySettings, worker: int) -> Path:
    """A worker's own spool (a spool is one process's), inside the configured one."""
    return Path(settings.spool_dir) / "workers" / str(worker)


class LinkStore:
    """The `Store` the writer sees: its inserts are batches handed to the telemetry process."""

    def __init__(self, link: Link, timeout_s: float) -> None:
        self.link = link
        self.timeout_s = timeout_s
        self.description = "the telemetry process"

    async def insert(self, database: str, table: str, names: Sequence[str], types: Sequence[str],
                     columns: Sequence[Sequence[Any]], token: str) -> None:
        await self.link.request(BATCH, (table, list(names), [list(c) for c in columns], token), self.timeout_s)

    async def ping(self) -> bool:
        return bool(await self.link.request(PING, (), self.timeout_s))

    async def command(self, sql: str) -> None:
        raise NotImplementedError("the telemetry process runs migrations itself")

    async def query(self, sql: str) -> Rows:
        raise NotImplementedError("use RemoteWriter.query_text")

    async def close(self) -> None:
        await self.link.close()


class RemoteWriter(TelemetryWriter):
    metrics_prefix = "warden_telemetry_handoff"

    def __init__(self, settings: TelemetrySettings, registry: CollectorRegistry, worker: int,
                 socket_path: Path | None = None, sealer: Sealer | None = None) -> None:
        local = settings.model_copy(update={"spool_dir": str(worker_spool(settings, worker)), "auto_migrate": False})
        super().__init__(local, registry, connect=self._open_link, sealer=sealer)  # the worker's spool sealed too
        self.socket_path = socket_path or telemetry_socket(settings)
        self._epoch = 0
        self._turn: list[tuple[str, Row]] = []
        self._unacked: dict[int, list[tuple[str, Row]]] = {}
        self._acked = asyncio.Event()
        self._scheduled = False
        self._handoff = TaskOwner("telemetry-handoff")  # spooling what a lost link left unacknowledged

    async def _open_link(self) -> LinkStore:
        link = await Link.connect(str(self.socket_path), self._on_frame, self._on_lost)
        link.send(HELLO, self._id_prefix)
        return LinkStore(link, self.settings.insert_timeout_s)

    @property
    def link(self) -> Link | None:
        store = self.store
        return store.link if isinstance(store, LinkStore) and store.link.open else None

    # -- the request path ----------------------------------------------------------------------

    def emit(self, table: str, row: Row) -> None:
        if self.link is None or self.spool_pending or self._closed:
            super().emit(table, row)  # buffered, then to the link or the spool by the flush loop
            return
        if table not in self._buffers:
            raise KeyError(table)
        if self.buffered_rows >= self.settings.max_buffer_rows:
            self._drop_buffer(table)
            return
        if isinstance(row, dict) and "ts" not in row:
            row["ts"] = time.time_ns() // 1_000_000
        self._turn.append((table, row))
        self.buffered_rows += 1
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._send_turn)

    def _send_turn(self) -> None:
        """This loop turn's rows, in one frame."""
        self._scheduled = False
        rows, self._turn = self._turn, []
        link = self.link
        if not rows:
            return
        if link is None:
            for table, row in rows:  # the link went while they waited: the flush loop spools them
                self._buffers[table].append(row)
            return
        self._unacked.setdefault(self._epoch, []).extend(rows)
        link.send_bytes(rows_frame(self._epoch, rows))

    # -- epochs and acknowledgements -----------------------------------------------------------

    async def _flush_tables(self) -> None:
        """Close the epoch (the telemetry process writes it), then what waited while the link was down."""
        self._send_turn()
        link = self.link
        if link is not None and self._epoch in self._unacked:
            link.send(CLOSE, self._epoch)
            self._epoch += 1
        await super()._flush_tables()

    def _on_frame(self, kind: int, body: Any) -> None:
        if kind != ACK:
            return
        rows = self._unacked.pop(body, None)
        if rows is None:
            return
        self.buffered_rows -= len(rows)
        for table, n in Counter(table for table, _ in rows).items():
            self.metrics.written.labels(table).inc(n)
        if self.buffered_rows < self.settings.max_buffer_rows // 2:
            self._dropping_buffer = False
        self._acked.set()

    def _on_lost(self, reason: BaseException) -> None:
        self.store = None
        self.store_down(reason)
        self._handoff.spawn(self._spool_unacked(), "spool-unacked")

    async def _spool_unacked(self) -> None:
        """Every unacknowledged epoch to the local spool, per table under the id the process would have used."""
        self._send_turn()
        epochs, self._unacked = self._unacked, {}
        if self._epoch in epochs:
            self._epoch += 1  # rows emitted from now on belong to a new epoch
        for epoch, rows in sorted(epochs.items()):
            tables: dict[str, list[Row]] = {}
            for table, row in rows:
                tables.setdefault(table, []).append(row)
            for table, table_rows in tables.items():
                entry = await self.io(self._to_entry, f"{self._id_prefix}-e{epoch}-{table}", table, table_rows)
                entry.attempted = True  # it may have landed: replayed alone, under this id
                await self.spool_entry(entry)
                self.buffered_rows -= len(table_rows)
        self._acked.set()

    # -- lifecycle -----------------------------------------------------------------------------

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Close the epoch and wait for its acknowledgement; what is not acknowledged in time is spooled."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s / 2
        self._send_turn()
        link = self.link
        if link is not None and self._epoch in self._unacked:
            link.send(CLOSE, self._epoch)
            self._epoch += 1
        while self._unacked and self.link is not None and loop.time() < deadline:
            self._acked.clear()
            try:
                await asyncio.wait_for(self._acked.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                break
        await self._handoff.close(timeout_s / 4)
        if self._unacked:
            await self._spool_unacked()
        await super().stop(max(1.0, timeout_s / 2))

    # -- reads through the telemetry process ---------------------------------------------------

    async def query_text(self, sql: str, fmt: str, timeout_s: float = 30.0) -> str:
        link = self.link
        if link is None:
            raise ConnectionError("the telemetry process is not connected")
        return str(await link.request(QUERY, (sql, fmt), timeout_s))

    async def metrics_text(self, timeout_s: float = 2.0) -> str:
        link = self.link
        if link is None:
            return ""
        return str(await link.request(METRICS, (), timeout_s))
