"""Applying migrations and retention to a store; used by the writer at start and `warden migrate`."""

from __future__ import annotations

import logging

from proxy.telemetry.schema import (
    MIGRATIONS,
    MIGRATIONS_TABLE,
    TABLES,
    Target,
    render_bootstrap,
    render_migration,
    ttl_clause,
    ttl_days,
)
from proxy.telemetry.settings import TelemetrySettings
from proxy.telemetry.store import Store, database_for

log = logging.getLogger("warden.telemetry.migrate")


def target_for(settings: TelemetrySettings) -> Target:
    unknown = sorted(set(settings.retention_days_by_table) - set(TABLES))
    if unknown:
        raise ValueError(f"telemetry.retention_days_by_table: unknown table(s) {', '.join(unknown)}; "
                         f"the tables are {', '.join(TABLES)}")
    return Target(
        database=database_for(settings.dsn, settings.database), cluster=settings.cluster,
        retention_days=settings.retention_days, retention_by_table=dict(settings.retention_days_by_table),
    )


async def applied_versions(store: Store, target: Target) -> set[int]:
    rows = await store.query(f"SELECT DISTINCT version FROM {target.qualified(MIGRATIONS_TABLE)}")
    return {int(r[0]) for r in rows.rows}


async def migrate(store: Store, target: Target, *, up_to: int | None = None) -> list[int]:
    """Apply pending migrations in order, then match table TTLs to the configured retention.

    Every statement is idempotent (IF NOT EXISTS), so a run cut short, or two proxies starting at
    once, converge on the same schema; a version is recorded only after all its statements ran.
    """
    for sql in render_bootstrap(target):
        await store.command(sql)
    done = await applied_versions(store, target)
    applied: list[int] = []
    for migration in MIGRATIONS:
        if migration.version in done or (up_to is not None and migration.version > up_to):
            continue
        for sql in render_migration(target, migration):
            await store.command(sql)
        name = migration.name.replace("\\", "\\\\").replace("'", "\\'")
        await store.command(
            f"INSERT INTO {target.qualified(MIGRATIONS_TABLE)} (version, name) VALUES ({migration.version}, '{name}')"
        )
        log.info("telemetry schema: applied migration %d (%s) to %s", migration.version, migration.name,
                 store.description)
        applied.append(migration.version)
    await apply_retention(store, target)
    return applied


async def apply_retention(store: Store, target: Target) -> list[str]:
    """ALTER the TTL of tables whose retention differs from the config, without rewriting old parts."""
    names = {target.data_table(t): t for t in TABLES}
    listed = ", ".join(f"'{n}'" for n in names)
    rows = await store.query(
        f"SELECT name, engine_full FROM system.tables WHERE database = '{target.database}' AND name IN ({listed})"
    )
    changed: list[str] = []
    for name, engine_full in rows.rows:
        table = TABLES[names[name]]
        if ttl_days(engine_full) == target.retention(table.name):
            continue
        await store.command(
            f"ALTER TABLE {target.qualified(name)}{target.on_cluster} MODIFY TTL {ttl_clause(target, table)} "
            "SETTINGS materialize_ttl_after_modify = 0"
        )
        log.info("telemetry schema: %s retention set to %d days", name, target.retention(table.name))
        changed.append(table.name)
    return changed
