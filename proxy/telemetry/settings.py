"""Config of the telemetry wing: where audit events, detections and drift go, and how they are batched."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from proxy.section import Section
from proxy.tracing.settings import OtelSettings


class TelemetrySettings(Section):
    """Audit events, detections and drift to ClickHouse, or to embedded chDB (see docs/telemetry.md).

    `dsn` is `chdb://PATH` for the embedded engine (a relative PATH is relative to the working
    directory, `chdb:///abs/path` is absolute; one process per directory) or
    `http(s)://user:password@host:port/database` for a ClickHouse server.
    """

    enabled: bool = True
    dsn: str = "chdb://.warden/clickhouse"
    database: str = Field("warden", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                          description="Used unless an http(s) DSN names one in its path.")
    cluster: str | None = Field(None, description="Create tables ON CLUSTER, Replicated + Distributed.")
    auto_migrate: bool = Field(True, description="Apply pending migrations when the writer starts.")
    batch_rows: int = Field(20_000, ge=1, description="Rows per insert at most; a full batch flushes at once.")
    flush_interval_s: float = Field(1.0, gt=0, description="Longest time a row waits in memory.")
    max_buffer_rows: int = Field(100_000, ge=1, description="Rows held in memory; beyond it rows are dropped.")
    insert_timeout_s: float = Field(10.0, gt=0, description="An insert slower than this goes to the spool.")
    spool_dir: str = ".warden/spool"
    spool_max_bytes: int = Field(1 << 30, gt=0, description="Disk cap of the spool; beyond it rows are dropped.")
    retention_days: int = Field(90, ge=1)
    retention_days_by_table: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict, description="Per-table overrides of retention_days, e.g. {audit_actions: 365}."
    )
    # OpenTelemetry traces over OTLP/HTTP (docs/metrics.md); independent of `enabled`, which is the audit store.
    otel: OtelSettings = OtelSettings()

    @field_validator("dsn")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("chdb://", "http://", "https://")):
            raise ValueError("must start with chdb://, http:// or https://")
        return value
