"""Warden's configuration: one YAML file, validated whole at start, with env overrides.

Every section is a pydantic model so that `warden check-config` can report every bad key
with its path before anything starts. Environment variables override the file with the
`WARDEN_` prefix and `__` between nested keys (`WARDEN_LISTEN__PORT=9000`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from yarl import URL

from detectors.runtime.settings import ScannerSettings
from proxy.cache.settings import CacheSettings
from proxy.codeploy.settings import CanarySettings, LoadSettings, ManagedSettings, check_canaries
from proxy.driftwatch.settings import DriftSettings
from proxy.governance.settings import GovernanceSettings
from proxy.policy.settings import DetectorSettings, PolicySettings
from proxy.review.settings import ReviewSettings


class _Section(BaseModel):
    """Unknown keys are errors: a typo in a config file must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class ListenSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)


class TimeoutSettings(_Section):
    connect_s: float = Field(5.0, gt=0, description="TCP connect to an upstream.")
    read_s: float = Field(
        120.0, gt=0, description="Longest silence from an upstream: before headers or between chunks."
    )
    body_read_s: float = Field(30.0, gt=0, description="Longest time a client may take to send its body.")
    keepalive_s: float = Field(75.0, gt=0, description="Longest idle client connection; also cuts a client "
                               "that never finishes its request headers (slowloris).")


class LimitSettings(_Section):
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0)


class HealthSettings(_Section):
    """Active probes plus passive ejection; an ejected backend returns only after a probe passes."""

    path: str = "/v1/models"
    interval_s: float = Field(5.0, gt=0)
    timeout_s: float = Field(2.0, gt=0)
    healthy_threshold: int = Field(1, ge=1)
    unhealthy_threshold: int = Field(2, ge=1)
    eject_base_s: float = Field(1.0, gt=0)
    eject_max_s: float = Field(60.0, gt=0)


class QueueSettings(_Section):
    max_waiting: int = Field(256, ge=0, description="Requests that may wait for a free backend slot.")
    timeout_s: float = Field(10.0, gt=0, description="Longest wait for a slot before a 503.")


class AffinitySettings(_Section):
    prefix_chars: int = Field(256, gt=0)
    session_header: str = "x-session-id"
    virtual_nodes: int = Field(64, gt=0)


class BackendSettings(_Section):
    url: str
    weight: int = Field(1, ge=1)
    max_concurrency: int | None = Field(None, ge=1, description="Overrides the group's cap.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        url = URL(value)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an http:// or https:// URL with a host")
        if url.user is not None or url.password is not None:
            raise ValueError("may not carry credentials: set the group's `api_key_env` instead")
        if url.query_string or url.fragment:
            raise ValueError("may not carry a query or fragment: a backend is a server root, optionally under a path")
        return normalise_backend_url(value)


class GroupSettings(_Section):
    name: str
    models: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    backends: list[BackendSettings] = Field(default_factory=list, description="required unless `managed`")
    balancer: Literal["least_outstanding", "round_robin", "prefix_affinity", "least_loaded"] = "least_outstanding"
    max_concurrency: int = Field(64, ge=1, description="Per-backend cap on outstanding requests.")
    api_key_env: str | None = Field(None, description="env var holding the backends' API key; sent upstream as "
                                                      "a bearer token in place of the client's credentials")
    queue: QueueSettings = QueueSettings()
    health: HealthSettings = HealthSettings()
    affinity: AffinitySettings = AffinitySettings()
    managed: ManagedSettings | None = None  # Warden starts and supervises the servers (docs/codeploy.md)
    load: LoadSettings = LoadSettings()  # the servers' own load signals, for least_loaded and autoscaling
    canary: CanarySettings | None = None  # a new version of another group, with a share of its traffic

    @model_validator(mode="after")
    def _has_backends(self) -> GroupSettings:
        if not self.backends and self.managed is None:
            raise ValueError("a group needs backends (or managed servers)")
        return self


class ServerSettings(_Section):
    shutdown_grace_s: float = Field(30.0, ge=0)
    uvloop: bool = True
    access_log: bool = False


class TelemetrySettings(_Section):
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

    @field_validator("dsn")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("chdb://", "http://", "https://")):
            raise ValueError("must start with chdb://, http:// or https://")
        return value


class WardenSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WARDEN_", env_nested_delimiter="__", extra="forbid")

    listen: ListenSettings = ListenSettings()
    upstreams: list[GroupSettings] = Field(default_factory=list)
    timeouts: TimeoutSettings = TimeoutSettings()
    limits: LimitSettings = LimitSettings()
    server: ServerSettings = ServerSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    scanner: ScannerSettings = ScannerSettings()
    detectors: list[DetectorSettings] = Field(default_factory=list, description="the ordered detector chain")
    policy: PolicySettings = PolicySettings()
    governance: GovernanceSettings = GovernanceSettings()
    cache: CacheSettings = CacheSettings()  # off by default (docs/cache.md)
    review: ReviewSettings = ReviewSettings()  # off until enabled with reviewers (docs/review.md)
    drift: DriftSettings = DriftSettings()  # off until enabled; needs a scanner embedder (docs/drift.md)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file: deployments patch one value without a new file.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _groups_coherent(self) -> WardenSettings:
        if not self.upstreams:
            raise ValueError("at least one upstream group is required (upstreams: [...])")
        names = [g.name for g in self.upstreams]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate upstream group names: {', '.join(dupes)}")
        check_canaries(self.upstreams)
        for tenant_name, tenant in self.governance.tenants.items():
            if tenant.upstream_group is not None and tenant.upstream_group not in names:
                raise ValueError(f"governance.tenants.{tenant_name}.upstream_group: no upstream group named "
                                 f"{tenant.upstream_group!r} (groups: {', '.join(names)})")
        detector_names = [d.name for d in self.detectors]
        if len(set(detector_names)) != len(detector_names):
            raise ValueError("detector names must be unique")
        tasks = {m.task for m in self.scanner.models}
        for detector in self.detectors:
            uses_scanner = detector.type in ("scanner", "similarity")
            if uses_scanner and self.scanner.mode == "off":
                raise ValueError(f"detector {detector.name!r} needs the scanner, but scanner.mode is off")
            if uses_scanner and self.scanner.mode == "managed" and detector.task not in tasks:
                raise ValueError(f"detector {detector.name!r} uses task {detector.task!r}, which no "
                                 f"scanner.models entry provides (tasks: {sorted(tasks)})")
        return self


def normalise_backend_url(value: str) -> str:
    """Backends are server roots; a trailing `/v1` (the OpenAI base URL habit) is dropped."""
    url = value.rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


class ConfigError(Exception):
    """A config that cannot be used, with one line per problem, each naming its key path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _describe(error: Any) -> str:
    path = ".".join(str(p) for p in error["loc"]) or "(top level)"
    return f"{path}: {error['msg']}"


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"{path}: invalid YAML{where}: {getattr(exc, 'problem', exc)}"]) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of sections"])
    return data


def build_settings(data: dict[str, Any]) -> WardenSettings:
    """Validate raw config data (plus env overrides), turning every failure into a ConfigError."""
    try:
        return WardenSettings(**data)
    except ValidationError as exc:
        raise ConfigError([_describe(e) for e in exc.errors()]) from exc


def load_settings(path: Path) -> WardenSettings:
    return build_settings(read_yaml(path))


def settings_for_upstreams(urls: list[str], port: int, host: str = "127.0.0.1") -> WardenSettings:
    """The zero-config drop-in: every model goes to one group holding the given servers."""
    group = {"name": "default", "models": ["*"], "backends": [{"url": u} for u in urls]}
    return build_settings({"listen": {"host": host, "port": port}, "upstreams": [group]})
