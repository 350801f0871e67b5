"""Warden's configuration: one YAML file, validated whole at start, with env overrides.

Every section is a pydantic model so that `warden check-config` can report every bad key
with its path before anything starts. Environment variables override the file with the
`WARDEN_` prefix and `__` between nested keys (`WARDEN_LISTEN__PORT=9000`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from detectors.runtime.settings import ScannerSettings
from proxy.cache.settings import CacheSettings
from proxy.codeploy.settings import UpstreamGroupSettings, check_canaries
from proxy.driftwatch.settings import DriftSettings
from proxy.governance.pricing import PricingSettings
from proxy.governance.settings import GovernanceSettings
from proxy.policy.settings import DetectorSettings, PolicySettings
from proxy.review.settings import ReviewSettings
from proxy.sealing import EncryptionSettings
from proxy.section import Section
from proxy.telemetry.settings import TelemetrySettings


class ListenSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)


class AdminSettings(Section):
    """Where the control plane (/admin, /review, /metrics) listens when it is kept off the API port."""

    listen: str | None = Field(None, description="host:port ([v6]:port) for /admin, /review and /metrics; "
                               "the API port then answers 404 there. Unset: everything on `listen`.")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            split_host_port(value)
        return value

    @property
    def host(self) -> str:
        return split_host_port(self.listen or "")[0]

    @property
    def port(self) -> int:
        return split_host_port(self.listen or "")[1]


def split_host_port(value: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port`; a bare v6 address is refused (which colon is the port's?)."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{value!r}: write an IPv6 address in brackets, as [::1]:9090")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port with a port from 0 to 65535 (e.g. 127.0.0.1:9090)")
    return host, int(port)


class TimeoutSettings(Section):
    connect_s: float = Field(5.0, gt=0, description="TCP connect to an upstream.")
    read_s: float = Field(
        120.0, gt=0, description="Longest silence from an upstream: before headers or between chunks."
    )
    body_read_s: float = Field(30.0, gt=0, description="Longest time a client may take to send its body.")
    keepalive_s: float = Field(75.0, gt=0, description="Longest idle client connection; also cuts a client "
                               "that never finishes its request headers (slowloris).")


class LimitSettings(Section):
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0)


class ServerSettings(Section):
    shutdown_grace_s: float = Field(30.0, ge=0)
    uvloop: bool = True
    access_log: bool = False
    # `json`: one object per line, with the request's id, tenant, model and trace id (proxy/tracing/logs.py).
    log_format: Literal["text", "json"] = "text"
    workers: int | Literal["auto"] | None = Field(
        None, description="proxy workers under a supervisor (`serve --workers`); unset: one process")

    @field_validator("workers")
    @classmethod
    def _some(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 1:
            raise ValueError("1 or more, or auto")
        return value


class ReadinessSettings(Section):
    """When /readyz says ready (Kubernetes takes a pod out of the Service while it does not)."""

    require: Literal["any", "all"] = Field(
        "any", description="any: one upstream group that can serve is enough (one dead model does not take "
                           "every pod out); all: every group (canaries aside) needs a healthy backend")


class WardenSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WARDEN_", env_nested_delimiter="__", extra="forbid")

    listen: ListenSettings = ListenSettings()
    admin: AdminSettings = AdminSettings()  # its own listener, off the API port (docs/configuration.md)
    upstreams: list[UpstreamGroupSettings] = Field(default_factory=list)
    timeouts: TimeoutSettings = TimeoutSettings()
    limits: LimitSettings = LimitSettings()
    server: ServerSettings = ServerSettings()
    readiness: ReadinessSettings = ReadinessSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    scanner: ScannerSettings = ScannerSettings()
    detectors: list[DetectorSettings] = Field(default_factory=list, description="the ordered detector chain")
    policy: PolicySettings = PolicySettings()
    governance: GovernanceSettings = GovernanceSettings()
    pricing: PricingSettings = PricingSettings()  # what requests cost: spend and budgets (docs/governance.md)
    cache: CacheSettings = CacheSettings()  # off by default (docs/cache.md)
    review: ReviewSettings = ReviewSettings()  # off until enabled with reviewers (docs/review.md)
    drift: DriftSettings = DriftSettings()  # off until enabled; needs a scanner embedder (docs/drift.md)
    encryption: EncryptionSettings = EncryptionSettings()  # at rest; off by default (docs/deploy.md)

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
        if self.admin.listen is not None and self.admin.port != 0 and \
                (self.admin.host, self.admin.port) == (self.listen.host, self.listen.port):
            raise ValueError(f"admin.listen: {self.admin.listen} is the API's own address (listen); "
                             "give the admin side another port, or leave admin.listen unset")
        for tenant_name, tenant in self.governance.tenants.items():
            if tenant.upstream_group is not None and tenant.upstream_group not in names:
                raise ValueError(f"governance.tenants.{tenant_name}.upstream_group: no upstream group named "
                                 f"{tenant.upstream_group!r} (groups: {', '.join(names)})")
        self.pricing.check_groups(self.upstreams)
        detector_names = [d.name for d in self.detectors]
        if len(set(detector_names)) != len(detector_names):
            raise ValueError("detector names must be unique")
        tasks = {m.task for m in self.scanner.models}
        for detector in self.detectors:
            uses_scanner = detector.needs_scanner
            if uses_scanner and self.scanner.mode == "off":
                raise ValueError(f"detector {detector.name!r} needs the scanner, but scanner.mode is off")
            if uses_scanner and self.scanner.mode == "managed" and detector.scanner_task not in tasks:
                raise ValueError(f"detector {detector.name!r} uses task {detector.scanner_task!r}, which no "
                                 f"scanner.models entry provides (tasks: {sorted(tasks)})")
        return self


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
