"""Which finished exchanges go to human review, each with the probability it had of going.

Every exchange falls in exactly one stratum, the first that applies: `blocked` (the policy
blocked it), `flagged` (flagged or redacted), `near` (a finding within `near_margin` of its
rule's threshold: where the detectors are least sure) and `uniform` (everything else, at the
rate of the first matching rate rule). An item is drawn by an independent coin with
probability

    pi = rate(stratum) * min(1, (cap / e)^2)

where `e` is the number of items the stratum would have drawn so far in the current window
without a cap (the running sum of its rates). The decay depends only on what traffic came,
never on earlier coin flips, so `pi` is known exactly, stays above zero (no item is left out
for sure, which is what keeps Horvitz-Thompson unbiased), and a flood draws at most about
`2 * cap` items per stratum and window instead of swamping reviewers.
"""

from __future__ import annotations

import fnmatch
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from proxy.exchange import FindingRecord
from proxy.review.settings import ReviewSettings

STRATA = ("blocked", "flagged", "near", "uniform")
ThresholdFor = Callable[[str, str], float]


@dataclass(frozen=True)
class Candidate:
    """What the sampler needs to know about one finished exchange."""

    tenant: str
    model: str
    route: str
    action: str  # the strongest policy action: allow, flag, redact, block
    findings: tuple[FindingRecord, ...] = ()


@dataclass(frozen=True)
class Draw:
    stratum: str
    probability: float  # the inclusion probability this item had (recorded even when not sampled)
    sampled: bool
    double: bool = False  # needs two independent reviews


@dataclass
class _Window:
    index: int = -1
    expected: float = 0.0


@dataclass
class Sampler:
    settings: ReviewSettings
    rng: random.Random = field(default_factory=random.Random)
    threshold_for: ThresholdFor = field(default=lambda detector, label: 0.5)  # the policy's default threshold
    # Traffic seen per (model, stratum) since the last `take_counts`: the HT population.
    seen: Counter[tuple[str, str]] = field(default_factory=Counter)
    _windows: dict[str, _Window] = field(default_factory=dict)

    def stratum_of(self, candidate: Candidate) -> str:
        if candidate.action == "block":
            return "blocked"
        if candidate.action in ("flag", "redact"):
            return "flagged"
        margin = self.settings.strata.near_margin
        if any(abs(f.score - self.threshold_for(f.detector, f.label)) <= margin for f in candidate.findings):
            return "near"
        return "uniform"

    def rate_of(self, candidate: Candidate, stratum: str) -> float:
        if stratum != "uniform":
            return float(getattr(self.settings.strata, stratum))
        for rule in self.settings.rates:
            if (_match(rule.tenants, candidate.tenant) and _match(rule.models, candidate.model)
                    and _match(rule.routes, candidate.route)):
                return rule.rate
        return self.settings.rate

    def probability(self, stratum: str, rate: float, now: float) -> float:
        """The capped probability for the next item of `stratum`; advances the window's count."""
        index = int(now // self.settings.window_s)
        window = self._windows.setdefault(stratum, _Window())
        if window.index != index:
            window.index, window.expected = index, 0.0
        window.expected += rate
        cap = self.settings.cap_per_window
        return rate if window.expected <= cap else rate * (cap / window.expected) ** 2

    def draw(self, candidate: Candidate, now: float) -> Draw:
        stratum = self.stratum_of(candidate)
        self.seen[(candidate.model, stratum)] += 1
        pi = self.probability(stratum, self.rate_of(candidate, stratum), now)
        sampled = pi > 0 and self.rng.random() < pi
        double = sampled and self.rng.random() < self.settings.double_review_share
        return Draw(stratum, pi, sampled, double)

    def take_counts(self) -> Counter[tuple[str, str]]:
        """Counts since the last call, handed to the store (which keeps the totals)."""
        counts, self.seen = self.seen, Counter()
        return counts


def _match(patterns: list[str], value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def policy_thresholds(rules: list[tuple[str, str, float]]) -> ThresholdFor:
    """The threshold of the first (detector, label) rule that matches; 0.5 (the rule default) otherwise.

    Tenant, route and model scoping of rules is ignored here: `near` is about the score, not who sent it.
    """

    def threshold_for(detector: str, label: str) -> float:
        for det, lab, threshold in rules:
            if fnmatch.fnmatchcase(detector, det) and fnmatch.fnmatchcase(label, lab):
                return threshold
        return 0.5

    return threshold_for
