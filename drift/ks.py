"""Two-sample Kolmogorov-Smirnov on every column at once, and Benjamini-Hochberg over the columns.

scipy's `ks_2samp` handles one column per call; 384 calls per window cost more than the whole
rest of a window. Here every column is sorted in one pass: each float32 value becomes an
order-preserving 32-bit key, shifted left with the sample's label in the low bit, so a plain
(SIMD) integer sort orders the pooled values *and* carries the labels (an argsort is 4x
slower). The statistic is exact: the ECDF difference is read only at the last of each run of
equal values, as scipy does. p-values follow scipy's rules: exact for equal sizes (scipy's
`_compute_prob_outside_square`), Smirnov's `kstwo` with n = round(n·m/(n+m)) otherwise, both
computed over all columns at once (`drift.kolmogorov`: scipy's are Python per value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from drift.kolmogorov import kolmogorov_sf, prob_outside_square

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class ColumnKS:
    statistic: Array  # D per column
    p_value: Array


def _order_keys(values: Array) -> Array:
    """uint32 keys whose unsigned order is the float order (with -0.0 folded into +0.0)."""
    canon = np.ascontiguousarray(values, dtype=np.float32) + np.float32(0.0)
    if not np.isfinite(canon).all():
        raise ValueError("KS needs finite values")
    bits = canon.view(np.uint32)
    negative = (bits & np.uint32(0x80000000)) != 0
    return np.where(negative, ~bits, bits | np.uint32(0x80000000))


def ks_columns(x: Array, y: Array, method: Literal["auto", "asymp"] = "auto") -> ColumnKS:
    """KS of every column of `x` (n×d) against the same column of `y` (m×d), as float32 values."""
    n, m = len(x), len(y)
    if n == 0 or m == 0:
        raise ValueError("KS needs two non-empty samples")
    pooled = np.concatenate([np.asarray(x, dtype=np.float32).T, np.asarray(y, dtype=np.float32).T], axis=1)
    keys = _order_keys(pooled).astype(np.uint64) << np.uint64(1)
    keys[:, n:] |= np.uint64(1)
    keys.sort(axis=1)
    # n·m·(F_x - F_y) stays an integer: +m per x, -n per y.
    wide = np.int64 if n * m >= 2**31 else np.int32
    steps = np.where((keys & np.uint64(1)).astype(bool), wide(-n), wide(m))
    diff = np.cumsum(steps, axis=1, dtype=wide)
    value = keys >> np.uint64(1)
    inside_run = value[:, 1:] == value[:, :-1]
    diff[:, :-1][inside_run] = 0
    d = np.maximum(diff.max(axis=1), -diff.min(axis=1)) / (n * m)
    return ColumnKS(statistic=d, p_value=ks_p_values(d, n, m, method))


def ks_p_values(d: Array, n: int, m: int, method: Literal["auto", "asymp"] = "auto") -> Array:
    """Two-sided p-values for KS statistics `d` of samples of sizes n and m (arrays at once: `drift.kolmogorov`)."""
    d = np.asarray(d, dtype=np.float64)
    if method == "auto" and n == m:
        return np.asarray(np.clip(prob_outside_square(n, np.round(d * n).astype(np.int64)), 0.0, 1.0))
    big, small = max(n, m), min(n, m)
    return kolmogorov_sf(int(np.round(big * small / (big + small))), d)


def benjamini_hochberg(p_values: Array) -> Array:
    """BH-adjusted p-values (q-values); reject where q <= alpha. Their minimum is Simes' global p-value."""
    p = np.asarray(p_values, dtype=np.float64)
    count = p.size
    if count == 0:
        return p
    order = np.argsort(p)
    scaled = p[order] * count / np.arange(1, count + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty_like(p)
    out[order] = np.minimum(adjusted, 1.0)
    return out
