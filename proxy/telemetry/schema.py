"""The ClickHouse schema as ordered, versioned migrations, rendered for one server or a cluster.

Tables are declared once as data (`Table`, `Column`), so the DDL and the writer's column lists
cannot drift apart: `TABLES` is the fold of every migration, and the writer inserts exactly
those columns. A migration is append-only history: never edit one that has shipped, add the
next (`AddColumn`, `AlterTable`).

Choices, each for the dashboards and for the "too many parts" failure mode:
- `PARTITION BY toDate(ts)` (UTC days) and `TTL ... SETTINGS ttl_only_drop_parts = 1`:
  retention drops whole day-parts instead of rewriting them.
- `ORDER BY` leads with the low-cardinality columns the dashboards filter on, then `ts`.
- Dedup: the writer sends `insert_deduplication_token` per batch; a plain MergeTree honours it
  only with `non_replicated_deduplication_window > 0` (checked on chDB 26.x: without it a
  replayed batch doubles). Replicated tables deduplicate by default.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

DEDUP_WINDOW = 10_000  # recent insert blocks remembered per table
MIGRATIONS_TABLE = "warden_migrations"
TS = "DateTime64(3, 'UTC')"
LC = "LowCardinality(String)"
ATTRS = "Map(LowCardinality(String), String)"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    codec: str = ""

    @property
    def default(self) -> object:
        """The value a row gets for a key it leaves out (what ClickHouse would fill in)."""
        t = self.type
        if t.startswith("Nullable("):
            return None
        if t.startswith("Array("):
            return []
        if t.startswith("Map("):
            return {}
        if t == "Bool":
            return False
        if t.startswith(("UInt", "Int")):
            return 0
        if t.startswith("Float"):
            return 0.0
        if t.startswith("DateTime64"):
            return 0
        return ""

    def ddl(self) -> str:
        codec = f" CODEC({self.codec})" if self.codec else ""
        return f"`{self.name}` {self.type}{codec}"


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    order_by: str
    partition_by: str = "toDate(ts)"
    ttl_column: str = "ts"
    shard_by: str = "rand()"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def column_types(self) -> tuple[str, ...]:
        return tuple(c.type for c in self.columns)

    def wire_types(self, names: list[str]) -> list[str]:
        """Types to encode an insert with: LowCardinality strings go as plain String.

        The server converts them to the table's types on insert (Native input allows type
        conversion); the client's LowCardinality dictionaries, built in Python, were 60% of
        an insert's cost (measured: a 20,000-row `requests` batch in 0.18 s, 0.09 s as String).
        """
        types = dict(zip(self.column_names, self.column_types, strict=True))
        return [types[n].replace(LC, "String") for n in names]


@dataclass(frozen=True)
class CreateTable:
    table: Table


@dataclass(frozen=True)
class AddColumn:
    table: str
    column: Column
    after: str | None = None


@dataclass(frozen=True)
class AlterTable:
    """An ALTER clause for the data table (on a cluster: the local tables only, e.g. indexes)."""

    table: str
    clause: str


Step = CreateTable | AddColumn | AlterTable


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Target:
    """Where and how to render: database, optional cluster, retention per table (days)."""

    database: str = "warden"
    cluster: str | None = None
    retention_days: int = 90
    retention_by_table: dict[str, int] = field(default_factory=dict)

    def retention(self, table: str) -> int:
        return self.retention_by_table.get(table, self.retention_days)

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER `{self.cluster}`" if self.cluster else ""

    def data_table(self, table: str) -> str:
        """The table that stores rows: `<t>_local` on a cluster, `<t>` itself otherwise."""
        return f"{table}_local" if self.cluster else table

    def qualified(self, table: str) -> str:
        return f"`{self.database}`.`{table}`"


def _ts(name: str = "ts") -> Column:
    return Column(name, TS, "Delta, ZSTD(1)")


_REQUESTS = Table("requests", (
    _ts(), Column("request_id", "String", "ZSTD(1)"), Column("tenant", LC), Column("api_key_id", LC),
    Column("route", LC), Column("model", LC), Column("backend", LC), Column("status", "UInt16"),
    Column("stream", "Bool"), Column("latency_ms", "Float32", "ZSTD(1)"), Column("ttfb_ms", "Nullable(Float32)"),
    Column("upstream_ms", "Float32", "ZSTD(1)"), Column("prompt_tokens", "UInt32", "T64, ZSTD(1)"),
    Column("completion_tokens", "UInt32", "T64, ZSTD(1)"), Column("verdict", LC),
    Column("detection_count", "UInt16"), Column("detection_categories", f"Array({LC})"),
    Column("model_version", LC), Column("prompt_template_id", LC), Column("prompt_template_version", LC),
    Column("attrs", ATTRS),
), order_by="(tenant, model, ts)")

_DETECTIONS = Table("detections", (
    _ts(), Column("request_id", "String", "ZSTD(1)"), Column("tenant", LC), Column("model", LC),
    Column("direction", LC), Column("detector", LC), Column("detector_version", LC), Column("category", LC),
    Column("action", LC), Column("score", "Float32"), Column("span_start", "UInt32"), Column("span_end", "UInt32"),
    Column("explanation", "String", "ZSTD(3)"), Column("attrs", ATTRS),
), order_by="(detector, category, ts)")

_DRIFT = Table("drift_windows", (
    _ts(), _ts("window_start"), Column("model", LC), Column("stream", LC), Column("statistic", LC),
    Column("value", "Float64"), Column("threshold", "Float64"), Column("p_value", "Nullable(Float64)"),
    Column("drifted", "Bool"), Column("sample_size", "UInt32"), Column("reference_id", LC), Column("attrs", ATTRS),
), order_by="(model, stream, statistic, ts)")

_SAMPLES = Table("review_samples", (
    _ts(), Column("sample_id", "String"), Column("request_id", "String", "ZSTD(1)"), Column("tenant", LC),
    Column("model", LC), Column("reason", LC), Column("stratum", LC), Column("sampling_rate", "Float64"),
    Column("verdict", LC), Column("prompt", "String", "ZSTD(3)"), Column("output", "String", "ZSTD(3)"),
    Column("attrs", ATTRS),
), order_by="(model, ts)")

_LABELS = Table("review_labels", (
    _ts(), Column("sample_id", "String"), Column("reviewer", LC), Column("label", LC), Column("severity", "UInt8"),
    Column("notes", "String", "ZSTD(3)"), Column("attrs", ATTRS),
), order_by="(sample_id, ts)")

_HEALTH = Table("backend_health", (
    _ts(), Column("upstream_group", LC), Column("backend", LC), Column("state", LC), Column("previous_state", LC),
    Column("reason", "String"),
), order_by="(backend, ts)")

_AUDIT = Table("audit_actions", (
    _ts(), Column("actor", LC), Column("action", LC), Column("target", "String"), Column("tenant", LC),
    Column("request_id", "String", "ZSTD(1)"), Column("outcome", LC), Column("details", ATTRS),
), order_by="(action, ts)")

# A reservoir sample of each drift window's embeddings (proxy/driftwatch): offline analysis, and
# the rows a `reference: {source: clickhouse}` time range is read back from.
_DRIFT_SAMPLES = Table("drift_samples", (
    _ts(), _ts("window_start"), Column("model", LC), Column("stream", LC), Column("reference_id", LC),
    Column("embedding", "Array(Float32)", "ZSTD(1)"), Column("attrs", ATTRS),
), order_by="(model, stream, ts)")

# An audit lookup ("everything about request X") reads a few granules instead of the whole range.
_REQUEST_ID_INDEX = "ADD INDEX IF NOT EXISTS request_id_idx request_id TYPE bloom_filter(0.01) GRANULARITY 4"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "telemetry tables", tuple(
        CreateTable(t) for t in (_REQUESTS, _DETECTIONS, _DRIFT, _SAMPLES, _LABELS, _HEALTH, _AUDIT)
    )),
    Migration(2, "request_id lookup indexes", (
        AlterTable("requests", _REQUEST_ID_INDEX),
        AlterTable("detections", _REQUEST_ID_INDEX),
    )),
    Migration(3, "drift reservoir samples", (CreateTable(_DRIFT_SAMPLES),)),
    # request_id is Warden's own (random); what a client sent as X-Request-Id is kept beside it.
    Migration(4, "client request ids", (
        AddColumn("requests", Column("client_request_id", "String", "ZSTD(1)"), after="request_id"),
    )),
    # Spend (docs/governance.md): the end user the client named, and what the request cost in the
    # pricing currency (0 when its model has no price: warden_spend_unpriced_total counts those).
    Migration(5, "spend: end user, cost, currency", (
        AddColumn("requests", Column("end_user", LC), after="api_key_id"),
        AddColumn("requests", Column("cost", "Float64", "ZSTD(1)"), after="completion_tokens"),
        AddColumn("requests", Column("currency", LC), after="cost"),
    )),
)


def fold_tables(migrations: tuple[Migration, ...]) -> dict[str, Table]:
    """The tables as the migrations leave them: what the writer inserts."""
    tables: dict[str, Table] = {}
    for migration in migrations:
        for step in migration.steps:
            if isinstance(step, CreateTable):
                tables[step.table.name] = step.table
            elif isinstance(step, AddColumn):
                old = tables[step.table]
                cols = list(old.columns)
                at = len(cols) if step.after is None else old.column_names.index(step.after) + 1
                cols.insert(at, step.column)
                tables[step.table] = replace(old, columns=tuple(cols))
    return tables


TABLES: dict[str, Table] = fold_tables(MIGRATIONS)


def _engine(target: Target, table: str, extra: str = "") -> str:
    if target.cluster:
        return f"ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{target.database}/{table}', '{{replica}}'){extra}"
    return f"MergeTree{extra}"


def ttl_clause(target: Target, table: Table) -> str:
    return f"toDateTime({table.ttl_column}) + INTERVAL {target.retention(table.name)} DAY"


def render_create(target: Target, table: Table) -> Iterator[str]:
    local = target.data_table(table.name)
    columns = ",\n  ".join(c.ddl() for c in table.columns)
    settings = "ttl_only_drop_parts = 1"
    if not target.cluster:
        settings += f", non_replicated_deduplication_window = {DEDUP_WINDOW}"
    yield (
        f"CREATE TABLE IF NOT EXISTS {target.qualified(local)}{target.on_cluster} (\n  {columns}\n)\n"
        f"ENGINE = {_engine(target, local)}\nPARTITION BY {table.partition_by}\nORDER BY {table.order_by}\n"
        f"TTL {ttl_clause(target, table)}\nSETTINGS {settings}"
    )
    if target.cluster:
        yield (
            f"CREATE TABLE IF NOT EXISTS {target.qualified(table.name)}{target.on_cluster} "
            f"AS {target.qualified(local)}\n"
            f"ENGINE = Distributed(`{target.cluster}`, `{target.database}`, `{local}`, {table.shard_by})"
        )


def render_step(target: Target, step: Step) -> Iterator[str]:
    if isinstance(step, CreateTable):
        yield from render_create(target, step.table)
    elif isinstance(step, AddColumn):
        after = f" AFTER `{step.after}`" if step.after else ""
        names = [target.data_table(step.table)] + ([step.table] if target.cluster else [])
        for name in names:
            yield (f"ALTER TABLE {target.qualified(name)}{target.on_cluster} "
                   f"ADD COLUMN IF NOT EXISTS {step.column.ddl()}{after}")
    else:
        yield f"ALTER TABLE {target.qualified(target.data_table(step.table))}{target.on_cluster} {step.clause}"


def render_bootstrap(target: Target) -> list[str]:
    """The database and the table that records applied migrations (replicated on a cluster)."""
    return [
        f"CREATE DATABASE IF NOT EXISTS `{target.database}`{target.on_cluster}",
        f"CREATE TABLE IF NOT EXISTS {target.qualified(MIGRATIONS_TABLE)}{target.on_cluster} "
        f"(version UInt32, name String, applied_at {TS} DEFAULT now64(3)) "
        f"ENGINE = {_engine(target, MIGRATIONS_TABLE)} ORDER BY version",
    ]


def render_migration(target: Target, migration: Migration) -> list[str]:
    return [sql for step in migration.steps for sql in render_step(target, step)]


def render_all(target: Target) -> list[str]:
    """Every statement, in order: what `warden migrate --dry-run` prints."""
    return render_bootstrap(target) + [sql for m in MIGRATIONS for sql in render_migration(target, m)]


TTL_DAYS = re.compile(r"\bTTL\b.*?toIntervalDay\((\d+)\)")


def ttl_days(engine_full: str) -> int | None:
    """The retention in days from `system.tables.engine_full` (ClickHouse normalises INTERVAL N DAY)."""
    match = TTL_DAYS.search(engine_full)
    return int(match.group(1)) if match else None
