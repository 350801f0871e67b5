"""The `detectors:` chain and the `policy:` rules of warden.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from detectors.redact import Operator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DetectorSettings(_Section):
    name: str
    type: Literal["scanner", "patterns", "injection_rules", "similarity", "leakage"] = Field(
        description="scanner: a model task of the scanner process (classifier or spans); patterns: secrets and "
        "canaries; injection_rules: known attack phrasings; similarity: cosine to attack exemplars through an "
        "embedding task; leakage: system-prompt n-gram overlap in outputs"
    )
    task: str | None = Field(None, description="the scanner task (for scanner and similarity)")
    exemplars_file: str | None = Field(None, description="similarity: one attack per line (default: shipped set)")
    ngram: int = Field(5, ge=2, description="leakage: words per n-gram")
    directions: list[Literal["request", "response"]] = ["request", "response"]
    on_error: Literal["open", "closed"] = Field(
        "open", description="when it cannot answer: open lets the text through (counted), closed blocks it"
    )
    timeout_s: float = Field(2.0, gt=0)
    report_min: float = Field(0.0, ge=0, le=1, description="scores below this are not findings at all")
    secrets: bool = True
    canaries: list[str] = Field(default_factory=list, description="strings whose appearance means leakage")

    @model_validator(mode="after")
    def _task_for_scanner(self) -> DetectorSettings:
        if self.type in ("scanner", "similarity") and not self.task:
            raise ValueError(f"a detector of type {self.type} needs a task (one of scanner.models[].task)")
        return self


class RuleSettings(_Section):
    """First matching rule wins; a finding no rule matches is allowed (and still audited)."""

    detector: str = "*"
    label: str = "*"
    action: Literal["allow", "flag", "redact", "block"]
    threshold: float = Field(0.5, ge=0, le=1)
    direction: Literal["request", "response", "both"] = "both"
    tenants: list[str] = Field(default_factory=lambda: ["*"])
    routes: list[str] = Field(default_factory=lambda: ["*"])
    models: list[str] = Field(default_factory=lambda: ["*"])


class PolicySettings(_Section):
    mode: Literal["enforce", "audit"] = Field(
        "enforce", description="audit: never change traffic, only record what enforce would have done"
    )
    rules: list[RuleSettings] = Field(default_factory=list)
    stream_window_chars: int = Field(
        64, ge=8, description="characters held back from a stream until scanned; longer entities may leak"
    )
    max_response_bytes: int = Field(8 * 1024 * 1024, gt=0, description="non-streamed bodies buffered for a scan")
    other_routes: Literal["pass", "block"] = Field(
        "pass", description="/v1 routes the detectors cannot read (files, audio, the Responses API, ...): pass "
        "them unscanned (counted in warden_policy_unscanned_total{reason=\"route\"}) or refuse them")
    redaction: dict[str, Operator] = Field(
        default_factory=lambda: {"DEFAULT": Operator()},
        description="presidio-anonymizer operators per label (replace, mask, hash, redact, keep); DEFAULT for the "
        "rest. Consistent within one response: the same value gets the same replacement.",
    )
    redaction_salt_env: str = Field("WARDEN_REDACTION_SALT", description="env var holding the hash salt")
