"""The `detectors:` chain and the `policy:` rules of warden.yaml."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PlainValidator, SerializeAsAny

from detectors.builtin_types import detector_types
from detectors.redact import Operator
from detectors.registry import DetectorOptions
from proxy.section import Section


def _detector_entry(entry: object) -> DetectorOptions:
    return detector_types().validate(entry)


# One `detectors:` entry, validated by the options model of the type it names: a built-in type's
# (detectors/builtin_types.py) or an installed plugin's (detectors/registry.py). Serialised as the
# model it was validated by, not as the base, so a dump keeps every key.
DetectorSettings = Annotated[SerializeAsAny[DetectorOptions], PlainValidator(_detector_entry)]


class RuleSettings(Section):
    """First matching rule wins; a finding no rule matches is allowed (and still audited)."""

    detector: str = "*"
    label: str = "*"
    action: Literal["allow", "flag", "redact", "block"]
    threshold: float = Field(0.5, ge=0, le=1)
    direction: Literal["request", "response", "both"] = "both"
    tenants: list[str] = Field(default_factory=lambda: ["*"])
    routes: list[str] = Field(default_factory=lambda: ["*"])
    models: list[str] = Field(default_factory=lambda: ["*"])


class PolicySettings(Section):
    mode: Literal["enforce", "audit"] = Field(
        "enforce", description="audit: never change traffic, only record what enforce would have done"
    )
    rules: list[RuleSettings] = Field(default_factory=list)
    stream_window_chars: int = Field(
        64, ge=8, description="the most characters a stream holds back for its detectors (they say how many they "
        "need: docs/policy.md, early release); an entity longer than this may be split")
    stream_max_hold_s: float = Field(
        30.0, gt=0, description="the longest a stream's held text waits for its scan (an overloaded scanner); then "
        "the response detectors' on_error applies: closed (any) ends the stream blocked, open releases it unscanned")
    max_response_bytes: int = Field(8 * 1024 * 1024, gt=0, description="non-streamed bodies buffered for a scan")
    oversize: Literal["block", "pass"] = Field(
        "block", description="a non-streamed answer over max_response_bytes: block answers 502 "
        "(response_too_large); pass relays it unscanned (counted in "
        "warden_policy_unscanned_total{reason=\"too_large\"})")
    other_routes: Literal["pass", "block"] = Field(
        "pass", description="/v1 routes that carry no model text to scan (files, models, audio): pass "
        "them unscanned (counted in warden_policy_unscanned_total{reason=\"route\"}) or refuse them")
    redaction: dict[str, Operator] = Field(
        default_factory=lambda: {"DEFAULT": Operator()},
        description="presidio-anonymizer operators per label (replace, mask, hash, redact, keep); DEFAULT for the "
        "rest. Consistent within one response: the same value gets the same replacement.",
    )
    redaction_salt_env: str = Field("WARDEN_REDACTION_SALT", description="env var holding the hash salt")
