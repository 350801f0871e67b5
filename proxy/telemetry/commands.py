"""`warden migrate` and `warden query`: the same store and SQL the writer uses, from a shell.

While `warden serve --workers N` runs on the embedded store, its telemetry process holds the chDB
directory (one process per directory), so `warden query` asks that process over its socket
(`telemetry_socket`), read-only; with no such process it opens the store itself, as before.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO

from proxy.telemetry.migrate import applied_versions, migrate, target_for
from proxy.telemetry.schema import render_all
from proxy.telemetry.settings import TelemetrySettings
from proxy.telemetry.store import ChdbStore, Rows, Store, StoreError, chdb_path, database_for, open_store
from proxy.telemetry.wire import QUERY, Link

READ_ONLY = ("select", "with", "show", "describe", "desc", "explain", "exists")
SOCKET_PATH_MAX = 100  # sockaddr_un holds 108 bytes


class QueryRefused(ValueError):
    """SQL that is not one read-only statement, refused before it reaches the store."""


def check_read_only(sql: str) -> None:
    """One SELECT-like statement, no file output: what a running Warden's store answers to a shell or a tool.

    A statement check, not the engine's `readonly` setting: on chDB that setting sticks to the one
    handle the writer inserts through. A `;` inside a string literal is refused too (rare in a query).
    """
    text = sql.strip().rstrip(";").strip()
    first = text.split(None, 1)[0].lower() if text else ""
    if first not in READ_ONLY:
        raise QueryRefused(f"only read-only SQL is answered while Warden runs ({', '.join(READ_ONLY).upper()}); "
                           f"this starts with {first.upper() or 'nothing'!r}")
    if ";" in text or "outfile" in text.lower():
        raise QueryRefused("one statement, with no INTO OUTFILE")


def telemetry_socket(settings: TelemetrySettings) -> Path:
    """Where the telemetry process listens: beside the chDB directory (so `warden query` finds it from
    the DSN alone), or beside the spool for a server DSN; a path too long for a socket goes to /tmp."""
    base = chdb_path(settings.dsn) if settings.dsn.startswith("chdb://") else Path(settings.spool_dir)
    path = base.with_name(base.name + ".sock")
    if len(str(path)) <= SOCKET_PATH_MAX:
        return path
    digest = hashlib.sha256(str(base.resolve()).encode()).hexdigest()[:16]
    return Path("/tmp") / f"warden-telemetry-{digest}.sock"


async def read_query(store: Store | None, settings: TelemetrySettings, sql: str) -> Rows:
    """Read-only SQL on a running Warden's store, with the telemetry database as the default one.

    chDB: on the writer's own handle (a second one on the directory is not possible). A server:
    a short-lived client of its own, whose default database can be set.
    """
    check_read_only(sql)
    database = database_for(settings.dsn, settings.database)
    if isinstance(store, ChdbStore):
        return await store.query_in(database, sql)
    if settings.dsn.startswith("chdb://"):
        raise ConnectionError("the embedded store is not open (see the log of whichever process owns it)")
    reader = await open_store(settings.dsn, timeout_s=settings.insert_timeout_s, database=database)
    try:
        return await reader.query(sql)
    finally:
        await reader.close()


async def query_running(path: Path, sql: str, fmt: str, timeout_s: float = 30.0) -> str:
    """The answer of the telemetry process at `path`, formatted there; OSError when none listens."""
    link = await Link.connect(str(path))
    try:
        return str(await link.request(QUERY, (sql, fmt), timeout_s))
    finally:
        await link.close()


async def migrate_command(settings: TelemetrySettings, *, dry_run: bool = False, out: TextIO | None = None) -> int:
    out = out or sys.stdout  # looked up at call time: a test (or a caller) may have replaced it
    target = target_for(settings)
    if dry_run:
        for sql in render_all(target):
            print(f"{sql};\n", file=out)
        return 0
    store = await open_store(settings.dsn, timeout_s=settings.insert_timeout_s)
    try:
        applied = await migrate(store, target)
        version = max(await applied_versions(store, target), default=0)
    finally:
        await store.close()
    done = f"applied migration(s) {', '.join(map(str, applied))}" if applied else "nothing to apply"
    print(f"{store.description}, database {target.database}: {done}; schema at version {version}", file=out)
    return 0


async def query_command(
    settings: TelemetrySettings, sql: str, *, fmt: str = "table", out: TextIO | None = None
) -> int:
    """Run SQL with the telemetry database as the default one, so `FROM requests` works.

    On the embedded store while a telemetry process holds it, the process answers (read-only).
    """
    out = out or sys.stdout
    if settings.dsn.startswith("chdb://"):
        path = telemetry_socket(settings)
        try:
            answer = await query_running(path, sql, fmt)
        except (TimeoutError, OSError):
            pass  # no telemetry process: the directory is free to open here
        except RuntimeError as exc:
            raise StoreError(f"the running Warden's telemetry process refused the query: {exc}") from None
        else:
            print(answer, file=out)
            return 0
    database = database_for(settings.dsn, settings.database)
    try:
        store = await open_store(settings.dsn, timeout_s=settings.insert_timeout_s, database=database)
    except StoreError:
        raise
    except Exception as exc:
        if "UNKNOWN_DATABASE" in str(exc):
            raise StoreError(f"database {database} does not exist on {settings.dsn}: run `warden migrate` first") \
                from exc
        raise
    try:
        rows = await store.query(sql)
    finally:
        await store.close()
    print(format_json(rows) if fmt == "json" else format_table(rows), file=out)
    return 0


def _cell(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


def format_json(rows: Rows) -> str:
    return json.dumps([dict(zip(rows.names, map(_cell, row), strict=True)) for row in rows.rows], default=str,
                      ensure_ascii=False, indent=1)


def format_table(rows: Rows) -> str:
    cells: list[Sequence[str]] = [rows.names, *([str(_cell(v)) for v in row] for row in rows.rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(rows.names))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"({len(rows.rows)} row{'s' if len(rows.rows) != 1 else ''})")
    return "\n".join(lines)
