"""Scalar signals (lengths, toxicity and PII rates): population stability index and KS per signal.

PSI bins by the reference's quantiles, so each bin holds about the same share of the reference
and a shift anywhere in the range shows; repeated values (a rate that is mostly 0) collapse
their edges, which turns PSI into a comparison of the discrete values' shares, as it should.
Empty bins are floored at `EPSILON` so a bin the reference never filled is a large but finite
term. The KS p-value is scipy's own `ks_2samp` (a few signals per window, not 384 columns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import ks_2samp

Array = np.ndarray[Any, Any]
EPSILON = 1e-4


@dataclass(frozen=True)
class ScalarResult:
    name: str
    psi: float
    ks: float
    p_value: float
    reference_mean: float
    current_mean: float


def psi(reference: Array, current: Array, bins: int = 10) -> float:
    """Population stability index of `current` against `reference`: sum (c - r)·ln(c / r) over bins."""
    reference = np.asarray(reference, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    inner = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    # Right-closed bins: a value equal to an edge falls with the values below it.
    ref_share = np.bincount(np.searchsorted(inner, reference, side="left"), minlength=len(inner) + 1) / len(reference)
    cur_share = np.bincount(np.searchsorted(inner, current, side="left"), minlength=len(inner) + 1) / len(current)
    ref_share = np.maximum(ref_share, EPSILON)
    cur_share = np.maximum(cur_share, EPSILON)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def compare_scalar(name: str, reference: Array, current: Array, bins: int = 10) -> ScalarResult:
    result = ks_2samp(reference, current)
    return ScalarResult(
        name=name, psi=psi(reference, current, bins), ks=float(result.statistic), p_value=float(result.pvalue),
        reference_mean=float(np.mean(reference)), current_mean=float(np.mean(current)),
    )
