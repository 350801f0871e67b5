"""From findings to an action: the first rule matching each finding decides; the strongest action wins."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from detectors.base import Direction, Finding
from proxy.policy.settings import PolicySettings, RuleSettings

UNAVAILABLE = "detector_unavailable"


class VerdictSink(Protocol):
    def add(self, action: str, decisions: list[Decision], direction: str) -> None: ...
    def note_allowed(self, findings: list[Finding], direction: str) -> None: ...


class Action(IntEnum):
    ALLOW = 0
    FLAG = 1
    REDACT = 2
    BLOCK = 3


@dataclass(frozen=True)
class Scope:
    """Who and what a scan is about; rules may be limited to tenants, routes and models."""

    tenant: str = "anonymous"
    route: str = ""
    model: str = ""
    request_id: str = ""
    summary: VerdictSink | None = None  # the exchange's running summary, when there is one


@dataclass(frozen=True)
class Decision:
    finding: Finding
    action: Action
    text_index: int


@dataclass
class Verdict:
    action: Action = Action.ALLOW
    decisions: list[Decision] = field(default_factory=list)  # the findings policy acted on
    allowed: list[Finding] = field(default_factory=list)  # the rest: review samples those near a threshold

    def redactions(self, text_index: int) -> list[Finding]:
        return [d.finding for d in self.decisions if d.action == Action.REDACT and d.text_index == text_index]

    @property
    def reasons(self) -> str:
        worst = [d for d in self.decisions if d.action == self.action]
        return ", ".join(sorted({f"{d.finding.detector}/{d.finding.label}" for d in worst}))


def _matches(patterns: list[str], value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


class PolicyEngine:
    def __init__(self, settings: PolicySettings) -> None:
        self.settings = settings
        self.rules = settings.rules

    def rule_for(self, finding: Finding, direction: Direction, scope: Scope) -> RuleSettings | None:
        for rule in self.rules:
            if (rule.direction in ("both", direction)
                    and fnmatch.fnmatchcase(finding.detector, rule.detector)
                    and fnmatch.fnmatchcase(finding.label, rule.label)
                    and finding.score >= rule.threshold
                    and _matches(rule.tenants, scope.tenant)
                    and _matches(rule.routes, scope.route)
                    and _matches(rule.models, scope.model)):
                return rule
        return None

    def action_for(self, finding: Finding, direction: Direction, scope: Scope) -> Action:
        if finding.label == UNAVAILABLE:
            return Action.BLOCK  # a fail-closed detector that could not answer
        rule = self.rule_for(finding, direction, scope)
        if rule is None:
            return Action.ALLOW
        action = Action[rule.action.upper()]
        if action == Action.REDACT and not finding.has_span:
            return Action.BLOCK  # nothing to cut out: a whole-text finding can only be blocked
        return action

    def decide(self, findings: list[list[Finding]], direction: Direction, scope: Scope) -> Verdict:
        verdict = Verdict()
        for index, text_findings in enumerate(findings):
            for finding in text_findings:
                action = self.action_for(finding, direction, scope)
                if action > Action.ALLOW:
                    verdict.decisions.append(Decision(finding, action, index))
                    verdict.action = max(verdict.action, action)
                else:
                    verdict.allowed.append(finding)
        return verdict
