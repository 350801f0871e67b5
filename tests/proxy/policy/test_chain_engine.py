"""Rules, actions and the fail-open / fail-closed rule of each detector."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from detectors.base import DetectorUnavailable, Direction, Finding, Priority
from detectors.builtin_types import PatternsOptions
from proxy.policy.chain import ChainEntry, DetectorChain
from proxy.policy.engine import UNAVAILABLE, Action, PolicyEngine, Scope
from proxy.policy.metrics import PolicyMetrics
from proxy.policy.settings import PolicySettings, RuleSettings


class Broken:
    version = "x"
    labels: tuple[str, ...] = ("x",)
    directions: frozenset[Direction] = frozenset({"request", "response"})

    def __init__(self, name: str, how: str) -> None:
        self.name = name
        self.how = how

    async def detect(self, texts: list[str], priority: Priority = "request") -> list[list[Finding]]:
        if self.how == "raise":
            raise RuntimeError("model exploded")
        if self.how == "unavailable":
            raise DetectorUnavailable("scanner is down")
        await asyncio.sleep(10)
        return []


def engine(*rules: RuleSettings) -> PolicyEngine:
    return PolicyEngine(PolicySettings(rules=list(rules)))


def test_first_matching_rule_wins_and_thresholds_apply() -> None:
    e = engine(RuleSettings(detector="tox", label="threat", action="block", threshold=0.9),
               RuleSettings(detector="tox", action="flag", threshold=0.5))
    findings = [[Finding("tox", "threat", 0.95)], [Finding("tox", "threat", 0.6)], [Finding("tox", "insult", 0.4)]]
    verdict = e.decide(findings, "response", Scope())
    assert [d.action for d in verdict.decisions] == [Action.BLOCK, Action.FLAG]
    assert verdict.action == Action.BLOCK and verdict.reasons == "tox/threat"


def test_scope_direction_and_span_rules() -> None:
    e = engine(RuleSettings(detector="pii", action="redact", models=["gpt-*"], direction="response"))
    span, whole = Finding("pii", "EMAIL_ADDRESS", 0.9, 3, 10), Finding("pii", "PERSON", 0.9)
    assert e.action_for(span, "response", Scope(model="gpt-4")) == Action.REDACT
    assert e.action_for(span, "request", Scope(model="gpt-4")) == Action.ALLOW
    assert e.action_for(span, "response", Scope(model="llama")) == Action.ALLOW
    assert e.action_for(whole, "response", Scope(model="gpt-4")) == Action.BLOCK  # nothing to cut out
    assert e.action_for(Finding("any", UNAVAILABLE, 1.0), "request", Scope()) == Action.BLOCK


async def test_each_failure_is_isolated_counted_and_follows_its_rule() -> None:
    registry = CollectorRegistry()
    entries = [
        ChainEntry(Broken("open-raise", "raise"), PatternsOptions(name="open-raise", type="patterns")),
        ChainEntry(Broken("open-down", "unavailable"), PatternsOptions(name="open-down", type="patterns")),
        ChainEntry(Broken("closed-slow", "hang"),
                   PatternsOptions(name="closed-slow", type="patterns", on_error="closed", timeout_s=0.05)),
    ]
    chain = DetectorChain(entries, PolicyMetrics(registry))
    findings = await chain.scan(["a", "b"], "request")
    assert findings == [[Finding("closed-slow", UNAVAILABLE, 1.0, explanation=findings[0][0].explanation)]] * 2
    assert "timed out" in findings[0][0].explanation
    verdict = engine().decide(findings, "request", Scope())
    assert verdict.action == Action.BLOCK

    def failures(name: str, outcome: str) -> float | None:
        return registry.get_sample_value("warden_detector_failures_total", {"detector": name, "outcome": outcome})

    assert failures("open-raise", "open") == 1 and failures("open-down", "open") == 1
    assert failures("closed-slow", "closed") == 1
