"""The `review:` section of warden.yaml: who reviews, what is sampled, where items are kept.

Review is off unless `enabled: true`; enabling it without a reviewer is a config error, because
a queue nobody can open only fills a disk.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from proxy.section import Section

_HASH = re.compile(r"^(scrypt\$\d+\$\d+\$\d+|pbkdf2_sha256\$\d+)\$[0-9a-f]{16,}\$[0-9a-f]{64}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ReviewerSettings(Section):
    """A reviewer logs in with a password (stored hashed) or a token (stored as its SHA-256)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    password_hash: str | None = Field(
        None, description="from `python -m proxy.review.auth hash`: scrypt$n$r$p$salt$hash or "
        "pbkdf2_sha256$iter$salt$hash")
    token_sha256: str | None = Field(None, description="hex SHA-256 of a long random token (for scripts and SSO glue)")
    can_reveal: bool = Field(False, description="may see raw text, where review.raw_text allows it (audited)")

    @field_validator("password_hash")
    @classmethod
    def _hash_format(cls, value: str | None) -> str | None:
        if value is not None and not _HASH.match(value):
            raise ValueError("not a password hash made by `python -m proxy.review.auth hash`")
        return value

    @field_validator("token_sha256")
    @classmethod
    def _token_format(cls, value: str | None) -> str | None:
        if value is not None and not _SHA256.match(value):
            raise ValueError("must be 64 lowercase hex characters (sha256 of the token)")
        return value

    @model_validator(mode="after")
    def _has_secret(self) -> ReviewerSettings:
        if self.password_hash is None and self.token_sha256 is None:
            raise ValueError(f"reviewer {self.name!r} needs password_hash or token_sha256")
        return self


class RateRule(Section):
    """The uniform stratum's rate for matching traffic; the first matching rule wins."""

    tenants: list[str] = Field(default_factory=lambda: ["*"])
    models: list[str] = Field(default_factory=lambda: ["*"])
    routes: list[str] = Field(default_factory=lambda: ["*"])
    rate: float = Field(ge=0, le=1)


class StrataSettings(Section):
    """Rates of the strata that sample on purpose; 1.0 means always (until the window cap bites)."""

    blocked: float = Field(1.0, gt=0, le=1)
    flagged: float = Field(1.0, gt=0, le=1)
    near: float = Field(1.0, gt=0, le=1)
    near_margin: float = Field(0.1, ge=0, le=1, description="a finding within this of its rule's threshold is near")


class ReviewSettings(Section):
    enabled: bool = False
    db_path: str = Field(".warden/review.sqlite3", description="the SQLite file (created with its directory)")
    reviewers: list[ReviewerSettings] = Field(default_factory=list)
    rate: float = Field(0.01, ge=0, le=1, description="uniform stratum rate when no rate rule matches")
    rates: list[RateRule] = Field(default_factory=list)
    strata: StrataSettings = StrataSettings()
    window_s: float = Field(3600.0, gt=0, description="the cap's time window")
    cap_per_window: int = Field(200, ge=1, description="per stratum; beyond it inclusion probability decays as "
                                "(cap/k)^2, so a flood yields at most about 2x cap items per window")
    double_review_share: float = Field(0.1, ge=0, le=1, description="share of items that need two reviewers")
    lease_s: float = Field(600.0, gt=0, description="how long a claim holds an item for one reviewer")
    categories: list[str] = Field(default_factory=lambda: ["pii", "toxicity", "injection", "leakage", "other"])
    raw_text: bool = Field(False, description="keep the raw (pre-policy) output too; revealing it is audited")
    max_text_chars: int = Field(20_000, ge=100, description="prompt and output are cut to this")
    session_secret_env: str = Field("WARDEN_REVIEW_SECRET", description="env var with the cookie-signing key; "
                                    "unset means a random key per process (sessions end on restart)")
    session_ttl_s: float = Field(12 * 3600.0, gt=0)
    cookie_secure: Literal["auto", "always", "never"] = "auto"
    counts_flush_s: float = Field(5.0, gt=0, description="how often traffic counts (the HT population) are saved")

    @model_validator(mode="after")
    def _usable(self) -> ReviewSettings:
        if self.enabled and not self.reviewers:
            raise ValueError("review.enabled needs at least one entry in review.reviewers")
        names = [r.name for r in self.reviewers]
        if len(set(names)) != len(names):
            raise ValueError("review.reviewers names must be unique")
        return self
