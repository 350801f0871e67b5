"""Verdicts become audit rows in the `detections` table: who, what, which detector and version, what was done.

Rows hold offsets and explanations, never the scanned text, so the audit trail holds no raw PII.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proxy.policy.engine import Scope, Verdict

Emit = Callable[[str, dict[str, Any]], None]


def detections_sink(emit: Emit, version_of: Callable[[str], str]) -> Callable[[Verdict, str, Scope], None]:
    """`version_of(detector)` is read per finding, not once at start-up: a scanner-backed detector
    learns its model's version only when the scanner answers, and again after a restart."""

    def sink(verdict: Verdict, direction: str, scope: Scope) -> None:
        for decision in verdict.decisions:
            finding = decision.finding
            emit("detections", {
                "request_id": scope.request_id,
                "tenant": scope.tenant,
                "model": scope.model,
                "direction": direction,
                "detector": finding.detector,
                "detector_version": version_of(finding.detector),
                "category": finding.label,
                "action": decision.action.name.lower(),
                "score": finding.score,
                "span_start": finding.start or 0,
                "span_end": finding.end or 0,
                "explanation": finding.explanation,
                "attrs": {"route": scope.route},
            })

    return sink
