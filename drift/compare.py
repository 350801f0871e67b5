"""One window against its reference: every statistic, each with its threshold, and the combined verdict."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from drift.classifier import domain_classifier, principal_axes
from drift.config import StatsConfig
from drift.kernel import PermutationResult, permutation_tests
from drift.ks import benjamini_hochberg, ks_columns
from drift.scalars import compare_scalar

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Sample:
    """Embeddings (rows) and, per scalar signal, one value per row."""

    embeddings: Array
    scalars: dict[str, Array] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.embeddings)


@dataclass(frozen=True)
class Statistic:
    name: str
    value: float
    threshold: float
    p_value: float | None
    drifted: bool
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    statistics: tuple[Statistic, ...]
    votes: int
    drifted: bool
    elapsed_s: float


def _fires(p: float, value: float, floor: float, alpha: float) -> bool:
    return p < alpha and value >= floor


def kernel_tests(x: Array, y: Array, config: StatsConfig, rng: np.random.Generator) -> PermutationResult:
    """The numpy path, or torch when asked for (cuda) or allowed (auto) and a GPU is there."""
    if config.device != "cpu":
        from drift.torch_kernel import cuda_available, permutation_tests_torch

        if config.device == "cuda" or cuda_available():
            return permutation_tests_torch(x, y, config.permutations, rng, device="cuda")
    return permutation_tests(x, y, config.permutations, rng)


def compare(reference: Sample, current: Sample, config: StatsConfig, seed: int | None = None) -> Comparison:
    """Every statistic of `current` against `reference`; seeded, so the same windows give the same answer.

    BLAS runs on `config.threads` threads: on small matrices, or on cores shared with an event
    loop, OpenBLAS's worker threads cost more than they give (measured 20x slower on 200 rows).
    """
    with threadpool_limits(limits=config.threads):
        return _compare(reference, current, config, seed)


def _compare(reference: Sample, current: Sample, config: StatsConfig, seed: int | None) -> Comparison:
    started = time.perf_counter()
    if len(reference) < 5 or len(current) < 5:
        raise ValueError("each side needs at least 5 embeddings")
    rng = np.random.default_rng(config.seed if seed is None else seed)
    x = np.asarray(reference.embeddings, dtype=np.float32)
    y = np.asarray(current.embeddings, dtype=np.float32)
    if config.pca_dims:
        mean, axes = principal_axes(x, config.pca_dims, rng)
        x, y = (x - mean) @ axes.T, (y - mean) @ axes.T
    alpha = config.alpha
    stats: list[Statistic] = []
    kernel = kernel_tests(x, y, config, rng)
    stats.append(Statistic("mmd", kernel.mmd2, config.mmd_min, kernel.mmd_p,
                           _fires(kernel.mmd_p, kernel.mmd2, config.mmd_min, alpha),
                           {"bandwidth": f"{kernel.bandwidth:.6g}", "permutations": str(config.permutations)}))
    stats.append(Statistic("centroid", kernel.centroid_distance, config.centroid_min, kernel.centroid_p,
                           _fires(kernel.centroid_p, kernel.centroid_distance, config.centroid_min, alpha)))
    if config.classifier:
        clf = domain_classifier(x, y, rng, config.classifier_folds, config.classifier_pca_dims, config.classifier_c)
        stats.append(Statistic("classifier_auc", clf.auc, config.auc_min, clf.p_value,
                               _fires(clf.p_value, clf.auc, config.auc_min, alpha),
                               {"folds": str(clf.folds), "dims": str(clf.dims)}))
    if config.ks:
        ks = ks_columns(x, y)
        q = benjamini_hochberg(ks.p_value)
        share = float(np.mean(q <= alpha))
        simes = float(q.min())
        stats.append(Statistic("ks_dims", share, config.ks_share_min, simes,
                               _fires(simes, share, config.ks_share_min, alpha),
                               {"dims": str(len(q)), "max_d": f"{float(ks.statistic.max()):.6g}"}))
    for name in sorted(set(reference.scalars) & set(current.scalars)):
        ref, cur = np.asarray(reference.scalars[name], float), np.asarray(current.scalars[name], float)
        ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]  # rows that did not carry this signal
        if len(ref) < 2 or len(cur) < 2:
            continue
        s = compare_scalar(name, ref, cur, config.psi_bins)
        stats.append(Statistic(f"psi:{name}", s.psi, config.psi_max, s.p_value,
                               _fires(s.p_value, s.psi, config.psi_max, alpha),
                               {"ks": f"{s.ks:.6g}", "reference_mean": f"{s.reference_mean:.6g}",
                                "current_mean": f"{s.current_mean:.6g}"}))
    votes = sum(1 for s in stats if s.drifted and s.name in config.votes)
    return Comparison(tuple(stats), votes, votes >= config.min_votes, time.perf_counter() - started)
