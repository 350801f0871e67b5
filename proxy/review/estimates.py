"""From human labels on a weighted sample back to the whole traffic: rates, intervals, detector quality.

Two phases. Phase one is the sampler: item i was drawn with known probability pi_i. Phase two
is review: within each (model, stratum) only a share r of the drawn items has a decided label
(ok or violation; unsure and tied double reviews count as undecided). Treating the decided
items as a random subset of their stratum's drawn items, each has inclusion probability
q_i = pi_i * r, and the Horvitz-Thompson estimate of the number of violations is
sum(y_i / q_i); divided by the traffic count N it is the violation rate. Its variance under
independent (Poisson) draws is estimated by sum((1 - q_i) / q_i^2 * y_i).

The interval is Wilson's, with the design's effective sample size p(1-p)/Var(p) (Kish's
(sum w)^2 / sum w^2 when that is undefined, e.g. no violation seen yet), so it stays inside
[0, 1] and is not zero-width when nothing was found.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Reviewed:
    """One drawn item as the estimates see it."""

    model: str
    stratum: str
    probability: float
    outcome: bool | None  # True: violation, False: ok, None: undecided or not reviewed yet
    fired: frozenset[str] = frozenset()  # detectors whose finding the policy acted on


@dataclass(frozen=True)
class RateEstimate:
    model: str
    traffic: int  # N: exchanges seen
    drawn: int
    decided: int
    violations: int
    rate: float
    low: float
    high: float
    std_error: float


@dataclass(frozen=True)
class DetectorQuality:
    detector: str
    precision: float | None
    recall: float | None
    fired: int  # decided items where it fired
    violations: int  # decided items labelled violation


@dataclass
class Agreement:
    pairs: int = 0
    agreed: int = 0
    kappa: float | None = None
    table: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def share(self) -> float | None:
        return self.agreed / self.pairs if self.pairs else None


def outcome_of(labels: Iterable[str]) -> bool | None:
    """Majority of ok vs violation; unsure does not vote; a tie is undecided."""
    votes = Counter(labels)
    if votes["violation"] > votes["ok"]:
        return True
    if votes["ok"] > votes["violation"]:
        return False
    return None


def wilson(p: float, n_eff: float, z: float = Z95) -> tuple[float, float]:
    if n_eff <= 0:
        return 0.0, 1.0
    p = min(1.0, max(0.0, p))
    denom = 1 + z * z / n_eff
    centre = (p + z * z / (2 * n_eff)) / denom
    half = z * math.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff * n_eff)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _response_rates(items: list[Reviewed]) -> dict[str, float]:
    drawn: Counter[str] = Counter(i.stratum for i in items)
    decided: Counter[str] = Counter(i.stratum for i in items if i.outcome is not None)
    return {s: decided[s] / drawn[s] for s in drawn if decided[s]}


def weights(items: list[Reviewed]) -> list[tuple[Reviewed, float]]:
    """(decided item, 1/q): each decided item stands for this many exchanges of its model."""
    rates = _response_rates(items)
    return [(i, 1.0 / (i.probability * rates[i.stratum])) for i in items if i.outcome is not None]


def rate_estimate(model: str, traffic: int, items: list[Reviewed], z: float = Z95) -> RateEstimate:
    weighted = weights(items)
    total = sum(w for i, w in weighted if i.outcome)
    variance = sum((1 - 1 / w) * w * w for i, w in weighted if i.outcome)
    population = traffic if traffic > 0 else sum(w for _, w in weighted)  # Hajek when N is unknown
    violations = sum(1 for i, _ in weighted if i.outcome)
    if not weighted or population <= 0:
        return RateEstimate(model, traffic, len(items), 0, 0, 0.0, 0.0, 1.0, 0.0)
    rate = total / population
    var_rate = variance / population**2
    if 0 < rate < 1 and var_rate > 0:
        n_eff = rate * (1 - rate) / var_rate
    else:
        n_eff = sum(w for _, w in weighted) ** 2 / sum(w * w for _, w in weighted)
    low, high = wilson(rate, n_eff, z)
    return RateEstimate(model, traffic, len(items), len(weighted), violations, rate, low, high, math.sqrt(var_rate))


def rates_by_model(traffic: dict[str, int], items: list[Reviewed]) -> list[RateEstimate]:
    by_model: dict[str, list[Reviewed]] = defaultdict(list)
    for item in items:
        by_model[item.model].append(item)
    models = sorted(set(traffic) | set(by_model))
    return [rate_estimate(m, traffic.get(m, 0), by_model[m]) for m in models]


def detector_quality(items: list[Reviewed]) -> list[DetectorQuality]:
    """Precision and recall of each detector against human labels, weighted by 1/q like the rates.

    Unweighted they would mislead: the sampler over-draws flagged items, which inflates recall.
    """
    weighted: list[tuple[Reviewed, float]] = []
    by_model: dict[str, list[Reviewed]] = defaultdict(list)
    for item in items:
        by_model[item.model].append(item)
    for group in by_model.values():
        weighted += weights(group)
    detectors = sorted({d for i, _ in weighted for d in i.fired})
    violation_weight = sum(w for i, w in weighted if i.outcome)
    found = []
    for name in detectors:
        fired_weight = sum(w for i, w in weighted if name in i.fired)
        hit_weight = sum(w for i, w in weighted if name in i.fired and i.outcome)
        found.append(DetectorQuality(
            name,
            hit_weight / fired_weight if fired_weight else None,
            hit_weight / violation_weight if violation_weight else None,
            sum(1 for i, _ in weighted if name in i.fired),
            sum(1 for i, _ in weighted if i.outcome),
        ))
    return found


def agreement(label_pairs: Iterable[tuple[str, str]]) -> Agreement:
    """Raw agreement and Cohen's kappa over the first two labels of double-reviewed items."""
    result = Agreement()
    for a, b in label_pairs:
        result.pairs += 1
        result.agreed += a == b
        result.table[(a, b)] += 1
    if result.pairs:
        n = result.pairs
        first: Counter[str] = Counter()
        second: Counter[str] = Counter()
        for (a, b), count in result.table.items():
            first[a] += count
            second[b] += count
        expected = sum(first[k] * second[k] for k in first) / (n * n)
        observed = result.agreed / n
        result.kappa = 1.0 if expected >= 1 else (observed - expected) / (1 - expected)
    return result
