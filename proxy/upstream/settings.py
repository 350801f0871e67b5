"""Config of the upstream pool: groups of backends, their health probes, queues and balancing.

`GroupSettings` here is what the pool reads of a group; the co-deploy wing extends it with the
sections it owns (`managed`, `load`, a canary's smoke test and rollback) into the `upstreams:`
entry of warden.yaml (proxy/codeploy/settings.py), so the pool never imports a wing.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from yarl import URL

from proxy.section import Section


class HealthSettings(Section):
    """Active probes plus passive ejection; an ejected backend returns only after a probe passes."""

    path: str = "/v1/models"
    interval_s: float = Field(5.0, gt=0)
    timeout_s: float = Field(2.0, gt=0)
    healthy_threshold: int = Field(1, ge=1)
    unhealthy_threshold: int = Field(2, ge=1)
    eject_base_s: float = Field(1.0, gt=0)
    eject_max_s: float = Field(60.0, gt=0)


class QueueSettings(Section):
    max_waiting: int = Field(256, ge=0, description="Requests that may wait for a free backend slot.")
    timeout_s: float = Field(10.0, gt=0, description="Longest wait for a slot before a 503.")


class AffinitySettings(Section):
    prefix_chars: int = Field(256, gt=0)
    session_header: str = "x-session-id"
    virtual_nodes: int = Field(64, gt=0)


class BackendSettings(Section):
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


class CanarySplit(Section):
    """The part of a canary the pool acts on: whose traffic it takes, and how much."""

    of: str
    weight: float = Field(ge=0, le=100, description="percent of the primary's requests; live-reloadable")

    def opens_at_once(self) -> bool:
        """Whether the canary takes its weight from the start (co-deploy may hold it at 0 until a smoke test)."""
        return True


class GroupSettings(Section):
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
    canary: CanarySplit | None = None  # a new version of another group, with a share of its traffic


def normalise_backend_url(value: str) -> str:
    """Backends are server roots; a trailing `/v1` (the OpenAI base URL habit) is dropped."""
    url = value.rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url
