"""The telemetry process: the one owner of the store (chDB's directory, or the ClickHouse client).

`warden serve --workers N` runs it beside the proxy workers (proxy/control/supervisor.py). Each
worker streams its rows here over a local socket (remote.py); this process batches them, inserts
them with the writer (writer.py: the same batching, spool, replay and deduplication as a single
Warden), and answers `warden query` and `GET /admin/query`. So chDB's "one process per directory"
holds by construction, and no insert runs on a worker's core.

Exactly once, per worker: a worker tags its rows with an epoch and closes the epoch every
`flush_interval_s`; the epoch's rows of one table become one batch whose id (its deduplication
token) is `<worker prefix>-e<epoch>-<table>`, acknowledged once it is in the store or the spool.
A worker that dies leaves its open epochs here: they are written on end of stream. If this
process dies, each worker spools what was not acknowledged under the same ids and hands it over
again later: whatever had landed is skipped by the store.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from proxy.sealing import EncryptionSettings, Sealer, SealingError, load_sealer
from proxy.tasks import TaskOwner
from proxy.telemetry.commands import QueryRefused, format_json, format_table, read_query
from proxy.telemetry.settings import TelemetrySettings
from proxy.telemetry.spool import Entry
from proxy.telemetry.store import Rows
from proxy.telemetry.wire import (
    ACK,
    BATCH,
    CLOSE,
    HELLO,
    METRICS,
    PING,
    QUERY,
    ROWS,
    FrameError,
    Peer,
    read_frame,
)
from proxy.telemetry.writer import Row, TelemetryWriter
from proxy.tracing.logs import configure

log = logging.getLogger("warden.telemetry.process")


class TelemetryServer:
    def __init__(self, writer: TelemetryWriter, socket_path: Path, registry: CollectorRegistry) -> None:
        self.writer = writer
        self.socket_path = socket_path
        self.registry = registry
        self.work = TaskOwner("telemetry-process")  # batch commits and queries
        self._server: asyncio.AbstractServer | None = None
        self._peers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()  # the server's connection tasks, awaited at stop

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # a socket left by a killed process; the supervisor runs one of us
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.socket_path), limit=1 << 28)
        os.chmod(self.socket_path, 0o600)

    async def stop(self, grace_s: float) -> None:
        """Stop accepting, commit what every connection left open, then wait for the writes."""
        if self._server is not None:
            self._server.close()
        for peer in list(self._peers):
            peer.close()
        await asyncio.gather(*self._handlers, return_exceptions=True)  # each commits what its worker left open
        await self.work.close(grace_s)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, stream: asyncio.StreamWriter) -> None:
        peer = Peer(stream)
        self._peers.add(stream)
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
        prefix = ""
        epochs: dict[int, dict[str, list[Row]]] = {}
        try:
            while True:
                kind, body = await read_frame(reader)
                if kind == ROWS:
                    tables = epochs.setdefault(body[0], {})
                    for table, row in body[1]:
                        tables.setdefault(table, []).append(row)
                elif kind == CLOSE:
                    self.work.spawn(self._commit(prefix, body, epochs.pop(body, {}), peer), "commit")
                elif kind == HELLO:
                    prefix = str(body)
                elif kind == BATCH:
                    self.work.spawn(self._batch(peer, *body), "batch")
                elif kind == QUERY:
                    self.work.spawn(self._query(peer, *body), "query")
                elif kind == METRICS:
                    peer.reply(body[0], True, generate_latest(self.registry).decode())
                elif kind == PING:
                    peer.reply(body[0], True, self.writer.store_up)
        except (asyncio.IncompleteReadError, ConnectionError, FrameError, OSError) as exc:
            if isinstance(exc, FrameError):
                log.error("telemetry: closing a connection that sent a bad frame: %s", exc)
        finally:
            self._peers.discard(stream)
            if handler is not None:
                self._handlers.discard(handler)
            for epoch, tables in epochs.items():  # the worker is gone: what it sent is kept
                self.work.spawn(self._commit(prefix, epoch, tables, None), "commit")
            stream.close()

    async def _commit(self, prefix: str, epoch: int, tables: dict[str, list[Row]], peer: Peer | None) -> None:
        for table, rows in tables.items():
            if table not in self.writer.tables:
                log.error("telemetry: %d rows for an unknown table %r dropped", len(rows), table)
                continue
            await self.writer.write_rows(f"{prefix}-e{epoch}-{table}", table, rows)
        if peer is not None:
            peer.send(ACK, epoch)

    async def _batch(self, peer: Peer, req: int, table: str, names: list[str], columns: list[list[Any]],
                     token: str) -> None:
        """A batch a worker spooled while this process was away, under the token it was first tried with."""
        try:
            if table not in self.writer.tables:
                raise ValueError(f"unknown table {table!r}")
            await self.writer.write_entry(Entry(token, table, list(names), columns, attempted=True))
        except Exception as exc:
            peer.reply(req, False, f"{type(exc).__name__}: {exc}")
            return
        peer.reply(req, True, None)

    async def _query(self, peer: Peer, req: int, sql: str, fmt: str) -> None:
        try:
            rows = await self.query(sql)
        except QueryRefused as exc:
            peer.reply(req, False, str(exc))
            return
        except Exception as exc:
            peer.reply(req, False, f"{type(exc).__name__}: {str(exc)[:2000]}")
            return
        peer.reply(req, True, format_json(rows) if fmt == "json" else format_table(rows))

    async def query(self, sql: str) -> Rows:
        """Read-only SQL with the telemetry database as the default one (`FROM requests` works)."""
        return await read_query(self.writer.store, self.writer.settings, sql)


async def serve_telemetry(settings: TelemetrySettings, socket_path: Path, *, stop: asyncio.Event | None = None,
                          on_ready: Callable[[], None] | None = None, sealer: Sealer | None = None) -> None:
    """Run until `stop` (SIGTERM, or the supervisor gone): then flush every row to the store or spool."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    registry = CollectorRegistry()
    writer = TelemetryWriter(settings, registry, sealer=sealer)
    await writer.start()
    server = TelemetryServer(writer, socket_path, registry)
    watch = TaskOwner("telemetry-parent")
    try:
        await server.start()
        watch.spawn(orphaned(stop), "parent")
        log.info("telemetry process %d serving %s on %s", os.getpid(), settings.dsn, socket_path)
        if on_ready is not None:
            on_ready()
        await stop.wait()
    finally:
        await watch.close(0)
        await server.stop(settings.insert_timeout_s)
        await writer.stop()
        loop.remove_signal_handler(signal.SIGTERM)
        log.info("telemetry process stopped")


async def orphaned(stop: asyncio.Event, interval_s: float = 1.0) -> None:
    """A child whose supervisor died (kill -9) stops on its own instead of living on unsupervised."""
    parent = os.getppid()
    while os.getppid() == parent:  # noqa: ASYNC110 - no event tells a child its parent died
        await asyncio.sleep(interval_s)
    log.error("the supervisor (pid %d) is gone; stopping", parent)
    stop.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proxy.telemetry.process")
    parser.add_argument("--settings-json", required=True, help="the telemetry section, as JSON")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    parser.add_argument("--encryption-json", help="the encryption section, as JSON: this process reads the "
                        "data key itself (its own environment, file or KMS command) to seal its spool")
    args = parser.parse_args(argv)
    configure(args.log_level, args.log_format)
    settings = TelemetrySettings.model_validate_json(args.settings_json)
    encryption = EncryptionSettings.model_validate_json(args.encryption_json or "{}")
    try:
        sealer = load_sealer(encryption)  # before the loop runs: a KMS command may take a while
    except SealingError as exc:
        log.error("telemetry process not started: %s", exc)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the supervisor's: it stops us last
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve_telemetry(settings, Path(args.socket), sealer=sealer))
    else:
        uvloop.run(serve_telemetry(settings, Path(args.socket), sealer=sealer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
