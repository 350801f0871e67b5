"""Calibration: false alarms at alpha under no shift, power under a known shift, over seeded trials.

Sizes (the issue allows smaller windows for the trials): reference and current n = m = 100 rows
of d = 16 isotropic Gaussian dimensions, 200 permutations, classifier PCA to 8 dimensions.
400 trials under no shift (binomial sd of a 0.05 rate: 0.011), 200 under a mean shift of L2
norm 1.0 (per-dimension sd 1), spread over all dimensions. Every trial is seeded: the rates are
the same on every run, and they are printed (`-s`) so docs/drift.md can quote them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from drift.compare import Sample, compare
from drift.config import StatsConfig

CONFIG = StatsConfig(classifier_pca_dims=8, permutations=200, alpha=0.05)
N, DIMS = 100, 16
# Projected first on 8 principal axes of the pooled windows (plus the mean's direction); the
# rows share an offset, as real embeddings do, so the centroid has a direction to compare.
PROJECTED, OFFSET = replace(CONFIG, pca_dims=8), 0.5


def _rates(shift: float, trials: int, config: StatsConfig = CONFIG, offset: float = 0.0) -> dict[str, float]:
    fired: dict[str, int] = {}
    verdicts = 0
    for trial in range(trials):
        rng = np.random.default_rng(10_000 + trial)
        x = rng.standard_normal((N, DIMS)) + offset
        y = rng.standard_normal((N, DIMS)) + offset + shift / np.sqrt(DIMS)
        result = compare(Sample(x), Sample(y), config, seed=trial)
        for stat in result.statistics:
            assert stat.p_value is not None
            fired[stat.name] = fired.get(stat.name, 0) + (stat.p_value < CONFIG.alpha)
        verdicts += result.drifted
    rates = {name: count / trials for name, count in fired.items()}
    rates["verdict"] = verdicts / trials
    print(f"shift {shift}, pca {config.pca_dims}: {rates}")
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


def test_a_projection_first_keeps_false_alarms_at_alpha() -> None:
    """Axes fitted on the reference alone flagged 13 of 30 same-distribution pairs (MMD, KS); pooled ones do not."""
    rates = _rates(0.0, 400, PROJECTED, OFFSET)
    for name in ("mmd", "centroid", "ks_dims"):
        assert 0.02 <= rates[name] <= 0.08, (name, rates)
    assert rates["verdict"] <= 0.08


def test_a_projection_first_keeps_the_power() -> None:
    rates = _rates(1.0, 200, PROJECTED, OFFSET)
    assert rates["mmd"] >= 0.9 and rates["verdict"] >= 0.9, rates
