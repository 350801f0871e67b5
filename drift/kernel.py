"""MMD² with an RBF kernel and centroid distance, each with a permutation p-value, all permutations at once.

One pooled kernel matrix K serves every permutation: a split of the pooled sample is a 0/1
column a marking the rows that play "reference", and with the splits stacked as columns of A,
one BLAS product K·A gives, per split, the three block sums of the unbiased MMD²:
Sxx = aᵀKa, Sxy = aᵀK1 - Sxx, Syy = 1ᵀK1 - 2·aᵀK1 + Sxx. (For equal sizes the biased
quadratic form would rank splits the same way; for unequal sizes it does not, so the unbiased
statistic is what is permuted.) The centroids of a split are Zᵀa/n and (Zᵀ1 - Zᵀa)/m: one thin
product on the same A.

Bandwidth: the median heuristic, σ² = median of pairwise squared distances in the pooled
sample (on a seeded subset of at most `MEDIAN_POINTS`), k(a, b) = exp(-|a-b|² / (2σ²)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
MEDIAN_POINTS = 512


@dataclass(frozen=True)
class PermutationResult:
    mmd2: float  # unbiased estimate
    mmd_p: float
    bandwidth: float  # σ²
    centroid_distance: float  # 1 - cosine of the two means
    centroid_p: float


def split_labels(n: int, m: int, permutations: int, rng: np.random.Generator) -> Array:
    """(n+m) × (1+P) bool, True marks "reference": column 0 is the observed split (first n rows), the rest
    seeded relabellings.

    Shuffling row indices (int64) and marking those under n takes the same draws as shuffling the
    0/1 rows themselves, so it gives the same splits, in half the time: numpy's shuffle has a fast
    path for 8-byte items only. A GPU window gets these as bytes, a quarter of the float32 masks.
    """
    total = n + m
    order = rng.permuted(np.broadcast_to(np.arange(total, dtype=np.int64), (permutations, total)), axis=1)
    labels = np.empty((total, permutations + 1), dtype=bool)
    labels[:, 0] = np.arange(total) < n
    np.less(order.T, n, out=labels[:, 1:])
    return labels


def split_masks(n: int, m: int, permutations: int, rng: np.random.Generator) -> Array:
    """`split_labels` as float32 0/1 columns, the operand of the K·A product."""
    return split_labels(n, m, permutations, rng).astype(np.float32)


def median_bandwidth(sq_dist: Array, rng: np.random.Generator) -> float:
    """σ² from a seeded subset; falls back to the mean (then 1) when most points coincide."""
    total = sq_dist.shape[0]
    pick = np.sort(rng.choice(total, size=min(total, MEDIAN_POINTS), replace=False))
    sub = sq_dist[np.ix_(pick, pick)]
    upper = sub[np.triu_indices(len(pick), k=1)]
    median = float(np.median(upper)) if upper.size else 0.0
    if median > 0:
        return median
    mean = float(upper.mean()) if upper.size else 0.0
    return mean if mean > 0 else 1.0


def permutation_tests(x: Array, y: Array, permutations: int, rng: np.random.Generator) -> PermutationResult:
    """MMD² and centroid distance of `x` (n×d) vs `y` (m×d), p-values from `permutations` relabellings."""
    n, m = len(x), len(y)
    z = np.concatenate([x, y]).astype(np.float32, copy=False)
    masks = split_masks(n, m, permutations, rng)
    sq = np.einsum("ij,ij->i", z, z)
    kernel = z @ z.T
    kernel *= -2.0
    kernel += sq[:, None]
    kernel += sq[None, :]
    np.maximum(kernel, 0.0, out=kernel)
    sigma2 = median_bandwidth(kernel, rng)
    kernel *= np.float32(-0.5 / sigma2)
    np.exp(kernel, out=kernel)
    sxx = np.einsum("ij,ij->j", masks, kernel @ masks, dtype=np.float64)
    row_sums = kernel.sum(axis=1, dtype=np.float64)
    mmd = split_mmd2(sxx, masks.T @ row_sums, float(row_sums.sum()), masks.T @ np.diagonal(kernel).astype(np.float64),
                     float(np.trace(kernel, dtype=np.float64)), n, m)
    sum_x = z.T @ masks
    distances = cosine_distances(sum_x / n, (z.sum(axis=0)[:, None] - sum_x) / m)
    return PermutationResult(
        mmd2=float(mmd[0]), mmd_p=permutation_p(mmd, 1.0), bandwidth=sigma2,
        centroid_distance=float(distances[0]), centroid_p=permutation_p(distances, 1.0),
    )


def split_mmd2(sxx: Array, a_rows: Array, total: float, a_diag: Array, trace: float, n: int, m: int) -> Array:
    """Unbiased MMD² per split from aᵀKa, aᵀK1, 1ᵀK1, aᵀdiag(K) and tr(K) (diagonal terms left out)."""
    sxy = a_rows - sxx
    syy = total - 2.0 * a_rows + sxx
    xx = (sxx - a_diag) / (n * (n - 1))
    yy = (syy - (trace - a_diag)) / (m * (m - 1))
    return np.asarray(xx + yy - 2.0 * sxy / (n * m))


def cosine_distances(a: Array, b: Array) -> Array:
    """1 - cos between matching columns of a and b (d × k each); zero vectors count as distance 1."""
    dots = np.einsum("ij,ij->j", a, b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=0).astype(np.float64) * np.linalg.norm(b, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms > 0, dots / norms, 0.0)
    return np.asarray(1.0 - np.clip(cos, -1.0, 1.0))


def permutation_p(statistics: Array, scale: float) -> float:
    """(1 + #{permuted >= observed}) / (1 + P): column 0 is the observed value; never 0, exact level.

    Values within 1e-6·scale of the observed one count as ties (as large): float32 kernels give
    equal splits slightly different sums, and calling those "smaller" would fake significance.
    """
    observed = float(statistics[0])
    return (1 + int(np.sum(statistics[1:] >= observed - 1e-6 * scale))) / len(statistics)
