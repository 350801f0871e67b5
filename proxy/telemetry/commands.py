"""`warden migrate` and `warden query`: the same store and SQL the writer uses, from a shell."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, TextIO

from proxy.telemetry.migrate import applied_versions, migrate, target_for
from proxy.telemetry.schema import render_all
from proxy.telemetry.settings import TelemetrySettings
from proxy.telemetry.store import Rows, StoreError, database_for, open_store


async def migrate_command(settings: TelemetrySettings, *, dry_run: bool = False, out: TextIO = sys.stdout) -> int:
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
    settings: TelemetrySettings, sql: str, *, fmt: str = "table", out: TextIO = sys.stdout
) -> int:
    """Run SQL with the telemetry database as the default one, so `FROM requests` works."""
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
