"""The `governance:` section: API keys, tenants and their limits, abuse throttling, the admin API."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from proxy.governance.budgets import BudgetSettings
from proxy.section import Section

ANONYMOUS = "anonymous"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_KEY_ID = re.compile(r"^[A-Za-z0-9_]{1,32}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


class KeySettings(Section):
    """A key given in the config: only its SHA-256 hash, never the key itself (`warden keys hash`)."""

    id: str = Field(description="the public part of the key (`wk-<id>-<secret>`); shows in logs and metrics")
    tenant: str
    sha256: str = Field(description="hex SHA-256 of the whole key")
    name: str = ""
    expires_at: datetime | None = Field(None, description="the key stops working then (ISO 8601, with a zone)")
    requests_per_minute: int | None = Field(None, ge=1, description="this key's own limit, inside its tenant's")
    tokens_per_minute: int | None = Field(None, ge=1)
    budget: BudgetSettings | None = Field(None, description="this key's own budget, besides its tenant's")
    metadata: dict[str, str] = Field(default_factory=dict, description="free-form: owner, team, ticket, ...")

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _KEY_ID.match(value):
            raise ValueError("1-32 characters of letters, digits and _ (no dash: it ends the id inside a key)")
        return value

    @field_validator("tenant")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("1-64 characters of letters, digits and . _ -")
        return value

    @field_validator("sha256")
    @classmethod
    def _hash(cls, value: str) -> str:
        if not _SHA256.match(value):
            raise ValueError("must be 64 lowercase hex digits (the SHA-256 of the key)")
        return value


class TenantSettings(Section):
    """What one tenant may do. Unset limits are unlimited."""

    models: list[str] = Field(default_factory=lambda: ["*"], description="allowed model names (glob patterns)")
    upstream_group: str | None = Field(None, description="pin this tenant's traffic to one upstream group")
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1, description="prompt plus completion tokens")
    max_concurrency: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1, description="largest max_tokens a request may ask for")
    max_context_tokens: int | None = Field(None, ge=1, description="largest prompt, estimated at 4 characters a token")
    timeout_s: float | None = Field(None, gt=0, description="longest a request may take, streaming included")
    budget: BudgetSettings | None = Field(None, description="what the tenant may spend per period (pricing currency)")
    user_budget: BudgetSettings | None = Field(None, description="what each end user of the tenant may spend "
                                                                 "(the request's `user`, or governance.user_header)")


class AbuseSettings(Section):
    """Per key signals over a sliding window; crossing a line throttles or suspends until expiry."""

    enabled: bool = True
    window_s: float = Field(300.0, gt=0)
    min_requests: int = Field(20, ge=1, description="below this many requests in the window no rate is judged")
    max_block_rate: float = Field(0.5, gt=0, le=1, description="share of requests blocked by policy")
    max_jailbreaks: int = Field(5, ge=1, description="requests with injection or jailbreak findings")
    max_rate_limited: int = Field(100, ge=1, description="requests refused by rate limits (a flood)")
    max_systematic: int = Field(50, ge=1, description="prompts sharing a template prefix with varied tails "
                                                      "(extraction-like enumeration)")
    template_prefix_chars: int = Field(48, ge=8)
    jailbreak_labels: list[str] = Field(default_factory=lambda: ["*injection*", "*jailbreak*", "*prompt_leak*"],
                                        description="finding labels that count as attempts (globs, any case)")
    throttle_s: float = Field(600.0, gt=0, description="how long a throttle lasts")
    throttle_rpm: int = Field(6, ge=1, description="requests per minute allowed while throttled")
    suspend_after: int = Field(3, ge=1, description="throttles within a day that turn into a suspension")
    suspend_s: float = Field(3600.0, gt=0)


class GovernanceSettings(Section):
    keys: list[KeySettings] = Field(default_factory=list)
    keys_file: str | None = Field(None, description="JSON file of hashed keys managed by `warden keys` and "
                                                     "the admin API; re-read when it changes")
    tenants: dict[str, TenantSettings] = Field(default_factory=dict)
    default_tenant: TenantSettings = Field(default_factory=TenantSettings,
                                           description="limits for tenants not listed, anonymous included")
    abuse: AbuseSettings = AbuseSettings()
    admin_token_sha256: list[str] = Field(default_factory=list, description="hashes of admin API bearer tokens")
    admin_token_env: str = Field("WARDEN_ADMIN_TOKEN", description="env var that may hold one admin token")
    allow_query_keys: bool = Field(False, description="never accept keys in URLs: they end up in logs")
    limiter: Literal["memory", "redis"] = Field(
        "memory", description="memory: limits per process; redis: shared by every replica (restart to change)")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="for limiter: redis")
    redis_prefix: str = "warden:limits:"
    redis_fail_open: bool = Field(True, description="Redis away: admit (counted) rather than refuse everything")
    budget_timezone: str = Field("UTC", description="where daily, weekly and monthly budgets start at midnight")
    user_header: str | None = Field(None, description="a header naming the end user, read before the body's `user`")

    @field_validator("budget_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name: 'UTC', 'Europe/Paris')") from None
        return value

    @field_validator("admin_token_sha256")
    @classmethod
    def _hashes(cls, values: list[str]) -> list[str]:
        for value in values:
            if not _SHA256.match(value):
                raise ValueError("each must be 64 lowercase hex digits (SHA-256 of the token)")
        return values

    @model_validator(mode="after")
    def _unique_ids(self) -> GovernanceSettings:
        ids = [k.id for k in self.keys]
        if len(ids) != len(set(ids)):
            raise ValueError("key ids must be unique")
        for name in self.tenants:
            if not _NAME.match(name):
                raise ValueError(f"tenant name {name!r}: 1-64 characters of letters, digits and . _ -")
        return self

    @property
    def keys_configured(self) -> bool:
        """Keys in the config or a keys file: then anonymous access is off."""
        return bool(self.keys) or self.keys_file is not None

    def tenant(self, name: str) -> TenantSettings:
        return self.tenants.get(name, self.default_tenant)
