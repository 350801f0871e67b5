"""Calibration: false alarms at alpha under no shift, power under a known shift, over seeded trials.

Sizes (the issue allows smaller windows for the trials): reference and current n = m = 100 rows
of d = 16 isotropic Gaussian dimensions, 200 permutations, classifier PCA to 8 dimensions.
400 trials under no shift (binomial sd of a 0.05 rate: 0.011), 200 under a mean shift of L2
norm 1.0 (per-dimension sd 1), spread over all dimensions. Every trial is seeded: the rates are
the same on every run, and they are printed (`-s`) so docs/drift.md can quote them.
"""

from __future__ import annotations

import numpy as np

from drift.compare import Sample, compare
from drift.config import StatsConfig

CONFIG = StatsConfig(classifier_pca_dims=8, permutations=200, alpha=0.05)
N, DIMS = 100, 16


def _rates(shift: float, trials: int) -> dict[str, float]:
    fired: dict[str, int] = {}
    verdicts = 0
    for trial in range(trials):
        rng = np.random.default_rng(10_000 + trial)
        x = rng.standard_normal((N, DIMS))
        y = rng.standard_normal((N, DIMS)) + shift / np.sqrt(DIMS)
        result = compare(Sample(x), Sample(y), CONFIG, seed=trial)
        for stat in result.statistics:
            assert stat.p_value is not None
            fired[stat.name] = fired.get(stat.name, 0) + (stat.p_value < CONFIG.alpha)
        verdicts += result.drifted
    rates = {name: count / trials for name, count in fired.items()}
    rates["verdict"] = verdicts / trials
    print(f"shift {shift}: {rates}")
    return rates


def test_false_positive_rate_under_no_shift() -> None:
    rates = _rates(0.0, 400)
    for name in ("mmd", "centroid", "ks_dims"):  # level-alpha tests
        assert 0.02 <= rates[name] <= 0.08, (name, rates)
    assert rates["classifier_auc"] <= 0.08  # conservative by construction (drift/classifier.py)
    assert rates["verdict"] <= 0.08


def test_power_under_a_mean_shift() -> None:
    rates = _rates(1.0, 200)
    assert rates["mmd"] >= 0.9 and rates["verdict"] >= 0.9, rates
