"""Config of co-deploy: managed model server processes, load signals, and canary rollouts.

Each is one optional field of an upstream group (`managed`, `load`, `canary`), so a group stays
the unit of routing, health and metrics whether Warden starts its servers or only points at them.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, model_validator

from proxy.section import Section
from proxy.upstream.settings import CanarySplit, GroupSettings

PLACEHOLDERS = ("port", "host", "gpu", "replica", "group")


class ManagedSettings(Section):
    """Warden starts `replicas` copies of `command` and supervises them (docs/codeploy.md)."""

    command: list[str] = Field(min_length=1, description="argv template; {port} {host} {gpu} {replica} {group} "
                                                         "are filled in per replica (no shell)")
    replicas: int = Field(1, ge=1)
    gpus: list[str] = Field(default_factory=list, description="device ids shared out over the replicas; each "
                                                              "gets len(gpus)//replicas of them as {gpu}")
    env: dict[str, str] = Field(default_factory=dict, description="added to Warden's environment; templated too. "
                                                                  "CUDA_VISIBLE_DEVICES={gpu} unless set here")
    host: str = "127.0.0.1"
    base_port: int | None = Field(None, ge=1, le=65535, description="replica i listens on base_port+i; "
                                                                     "default: a free port picked at start")
    cwd: str | None = None
    ready_path: str = Field("/health", description="a 200 here means the replica takes traffic")
    start_timeout_s: float = Field(600.0, gt=0, description="model loading included; then killed and retried")
    stop_grace_s: float = Field(30.0, ge=0, description="between SIGTERM and SIGKILL")
    restart_backoff_s: float = Field(1.0, gt=0)
    restart_backoff_max_s: float = Field(60.0, gt=0, description="also how long a replica must stay up for its "
                                                                 "back-off to start over")

    @model_validator(mode="after")
    def _port_is_passed(self) -> ManagedSettings:
        if not any("{port}" in part for part in [*self.command, *self.env.values()]):
            raise ValueError("the command (or env) must contain {port}: Warden picks each replica's port")
        return self

    def gpu_of(self, replica: int) -> str:
        """Replicas split the GPUs evenly; with more replicas than GPUs they share them round-robin."""
        if not self.gpus:
            return ""
        per = len(self.gpus) // self.replicas
        if per == 0:
            return self.gpus[replica % len(self.gpus)]
        return ",".join(self.gpus[replica * per:(replica + 1) * per])


class LoadSettings(Section):
    """Load the servers report themselves (vLLM, llama.cpp, TGI, SGLang `/metrics`), read off the hot path."""

    scrape: bool = Field(False, description="read each backend's metrics; on by itself with balancer least_loaded")
    path: str = "/metrics"
    interval_s: float = Field(2.0, gt=0)
    waiting_weight: float = Field(1.0, ge=0, description="cost of one request queued in the server")
    kv_weight: float = Field(4.0, ge=0, description="cost of a full KV cache, in requests")


class SmokeSettings(Section):
    prompts: list[str] = Field(min_length=1, description="each must be answered 200 and pass the detectors")
    model: str | None = Field(None, description="the `model` sent; default: the primary's first literal model")
    max_tokens: int = Field(16, ge=1)
    timeout_s: float = Field(30.0, gt=0)
    expect: str | None = Field(None, description="a substring every answer must contain")


class RollbackSettings(Section):
    window_s: float = Field(60.0, gt=0, description="outcomes older than this are forgotten")
    min_requests: int = Field(20, ge=1, description="canary answers in the window before it is judged")
    error_margin: float = Field(0.05, ge=0, le=1, description="canary 5xx rate may exceed the primary's by this")
    block_margin: float = Field(0.05, ge=0, le=1, description="canary response-block rate may exceed the "
                                                              "primary's by this")


class CanarySettings(CanarySplit):
    """This group is a new version of group `of`: it takes `weight` percent of `of`'s traffic."""

    smoke: SmokeSettings | None = Field(None, description="must pass before the canary gets any traffic")
    rollback: RollbackSettings | None = Field(default_factory=RollbackSettings,
                                              description="null: never roll back automatically")

    def opens_at_once(self) -> bool:
        return self.smoke is None


class UpstreamGroupSettings(GroupSettings):
    """One `upstreams:` entry of warden.yaml: the pool's group plus the sections co-deploy owns."""

    managed: ManagedSettings | None = None  # Warden starts and supervises the servers (docs/codeploy.md)
    load: LoadSettings = LoadSettings()  # the servers' own load signals, for least_loaded and autoscaling
    canary: CanarySettings | None = None  # a new version of another group, with a share of its traffic

    @model_validator(mode="after")
    def _has_backends(self) -> UpstreamGroupSettings:
        if not self.backends and self.managed is None:
            raise ValueError("a group needs backends (or managed servers)")
        return self


def deployed(group: GroupSettings) -> UpstreamGroupSettings:
    """A pool group's co-deploy sections: the pool keeps its groups typed as its own settings, which it reads.

    Groups built from warden.yaml already are `UpstreamGroupSettings`; one built as a bare pool group
    (a test, the zero-config drop-in) gets co-deploy's defaults: nothing managed, no canary.
    """
    if isinstance(group, UpstreamGroupSettings):
        return group
    return UpstreamGroupSettings.model_validate(group.model_dump())


def check_canaries(groups: Sequence[UpstreamGroupSettings]) -> None:
    """Cross-group rules: a canary names a real primary that is not itself a canary, shares add up."""
    by_name = {g.name: g for g in groups}
    shares: dict[str, float] = {}
    for group in groups:
        if group.canary is None:
            continue
        primary = by_name.get(group.canary.of)
        if primary is None or primary is group:
            raise ValueError(f"upstream group {group.name!r}: canary.of names no other group ({group.canary.of!r})")
        if primary.canary is not None:
            raise ValueError(f"upstream group {group.name!r}: canary.of {primary.name!r} is itself a canary")
        shares[primary.name] = shares.get(primary.name, 0.0) + group.canary.weight
    over = sorted(name for name, total in shares.items() if total > 100)
    if over:
        raise ValueError(f"canary weights of group(s) {', '.join(over)} add up to more than 100")
