"""Horvitz-Thompson on synthetic traffic with known truth: unbiased, intervals that cover."""

from __future__ import annotations

import math
import random

import numpy as np

from proxy.exchange import FindingRecord
from proxy.review.estimates import Reviewed, agreement, detector_quality, outcome_of, rate_estimate, wilson
from proxy.review.sampler import Candidate, Sampler
from proxy.review.settings import ReviewSettings

# (share of traffic, policy action, true violation rate): the sampler over-draws where violations are.
MIX = (("block", 0.02, 0.8), ("flag", 0.05, 0.4), ("allow", 0.93, 0.02))


def population(n: int, seed: int = 3) -> tuple[list[Candidate], np.ndarray]:
    rng = random.Random(seed)
    candidates, truth = [], []
    for _ in range(n):
        x, acc = rng.random(), 0.0
        for action, share, rate in MIX:  # noqa: B007 - the loop picks the row that is used below
            acc += share
            if x < acc:
                break
        fired = (FindingRecord("response", "tox", "toxic", 0.9, action, ""),) if action != "allow" else ()
        candidates.append(Candidate("t", "m", "/v1/chat/completions", action, fired))
        truth.append(rng.random() < rate)
    return candidates, np.array(truth)


def probabilities(candidates: list[Candidate], **kw: object) -> np.ndarray:
    """One pass of the real sampler; pi depends only on the traffic (tests/proxy/review/test_sampler.py)."""
    sampler = Sampler(ReviewSettings.model_validate({"rate": 0.1, "cap_per_window": 60, "window_s": 1000, **kw}))
    return np.array([sampler.draw(c, now=float(i)).probability for i, c in enumerate(candidates)])


def simulate(review_share: float, runs: int, seed: int) -> tuple[float, list[float], float, float, float]:
    candidates, truth = population(8000)
    pi = probabilities(candidates)
    strata = [Sampler(ReviewSettings()).stratum_of(c) for c in candidates]
    rng = np.random.default_rng(seed)
    true_rate = float(truth.mean())
    estimates, covered, naive = [], 0, []
    for _ in range(runs):
        drawn = np.flatnonzero(rng.random(len(pi)) < pi)
        decided = rng.random(len(drawn)) < review_share
        items = [Reviewed("m", strata[i], float(pi[i]), bool(truth[i]) if d else None,
                          frozenset({"tox"}) if candidates[i].findings else frozenset())
                 for i, d in zip(drawn, decided, strict=True)]
        est = rate_estimate("m", len(candidates), items)
        estimates.append(est.rate)
        covered += est.low <= true_rate <= est.high
        labelled = [i.outcome for i in items if i.outcome is not None]
        naive.append(sum(labelled) / len(labelled))
    return true_rate, estimates, covered / runs, float(np.mean(naive)), float(pi.sum())


def test_ht_is_unbiased_and_intervals_cover() -> None:
    runs = 600
    truth, estimates, coverage, naive, expected_drawn = simulate(1.0, runs, seed=11)
    mean, sd = float(np.mean(estimates)), float(np.std(estimates))
    print(f"\nHT, all drawn reviewed: truth {truth:.4f}, mean estimate {mean:.4f} (sd {sd:.4f}, "
          f"bias {mean - truth:+.5f}), 95% CI coverage {coverage:.3f}, naive share {naive:.4f}, "
          f"~{expected_drawn:.0f} drawn of 8000")
    assert abs(mean - truth) < 3.5 * sd / math.sqrt(runs)
    assert 0.91 <= coverage <= 0.99
    assert naive > 2 * truth  # the unweighted share is far off: weighting is what the test checks


def test_ht_stays_unbiased_when_only_part_is_reviewed() -> None:
    runs = 600
    truth, estimates, coverage, _, _ = simulate(0.5, runs, seed=12)
    mean, sd = float(np.mean(estimates)), float(np.std(estimates))
    print(f"\nHT, half of the drawn reviewed: truth {truth:.4f}, mean {mean:.4f} (sd {sd:.4f}), "
          f"coverage {coverage:.3f}")
    assert abs(mean - truth) < 3.5 * sd / math.sqrt(runs)
    assert 0.90 <= coverage <= 0.99


def test_detector_quality_is_weighted() -> None:
    # 1 item for 100 unflagged exchanges, 1 for 1 flagged: recall must see the unflagged violations' weight.
    items = [Reviewed("m", "flagged", 1.0, True, frozenset({"tox"})),
             Reviewed("m", "flagged", 1.0, False, frozenset({"tox"})),
             Reviewed("m", "uniform", 0.01, True, frozenset()),
             Reviewed("m", "uniform", 0.01, False, frozenset())]
    (quality,) = detector_quality(items)
    assert quality.precision == 0.5
    assert quality.recall is not None and abs(quality.recall - 1 / 101) < 1e-9


def test_small_cases() -> None:
    assert outcome_of(["ok", "violation", "violation"]) is True
    assert outcome_of(["ok", "violation"]) is None
    assert outcome_of(["unsure"]) is None
    low, high = wilson(0.0, 50)
    assert low < 1e-12 and 0.05 < high < 0.1  # nothing seen yet is not certainty
    est = rate_estimate("m", 1000, [Reviewed("m", "uniform", 0.1, False) for _ in range(10)])
    assert est.rate == 0.0 and est.high > 0.1
    result = agreement([("ok", "ok"), ("violation", "violation"), ("ok", "violation"), ("unsure", "unsure")])
    assert result.pairs == 4 and result.share == 0.75 and result.kappa is not None and 0.5 < result.kappa < 0.7
