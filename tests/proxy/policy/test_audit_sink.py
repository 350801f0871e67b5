"""Audit rows name the detector's model version as it is when the finding is made, not at start-up."""

from __future__ import annotations

from typing import Any

from detectors.base import Finding
from proxy.policy.audit_sink import detections_sink
from proxy.policy.engine import Action, Decision, Scope, Verdict


def test_the_version_is_read_when_each_row_is_written() -> None:
    rows: list[dict[str, Any]] = []
    versions = {"pii": "unknown"}  # the scanner had not answered when the proxy started
    sink = detections_sink(lambda table, row: rows.append(row), lambda name: versions.get(name, ""))
    verdict = Verdict(Action.REDACT, [Decision(Finding("pii", "PERSON", 0.9, 0, 5), Action.REDACT, 0)])
    sink(verdict, "request", Scope(request_id="r1"))
    versions["pii"] = "pii:v2"  # described since (or the scanner restarted with another model)
    sink(verdict, "request", Scope(request_id="r2"))
    assert [r["detector_version"] for r in rows] == ["unknown", "pii:v2"]
    assert rows[0]["span_start"] == 0 and rows[0]["span_end"] == 5 and rows[0]["action"] == "redact"
