"""One window against its reference: every statistic, each with its threshold, and the combined verdict."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from drift.classifier import ClassifierResult, domain_classifier, principal_axes
from drift.config import StatsConfig
from drift.kernel import PermutationResult, permutation_tests
from drift.ks import ColumnKS, benjamini_hochberg, ks_columns
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
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage: prepare, permutation, classifier, ks
    backend: str = "numpy"  # or "torch:<device>": which path computed the embedding statistics


def _fires(p: float, value: float, floor: float, alpha: float) -> bool:
    return p < alpha and value >= floor


def resolve_torch_device(config: StatsConfig) -> str | None:
    """The torch device a window runs on: cuda when asked for (cuda) or allowed (auto) and a GPU is there; None
    for the numpy path."""
    if config.device == "cpu":
        return None
    from drift.torch_kernel import cuda_available

    return "cuda" if config.device == "cuda" or cuda_available() else None


@dataclass(frozen=True)
class _Embedding:
    kernel: PermutationResult
    classifier: ClassifierResult | None
    ks: ColumnKS | None


def compare(reference: Sample, current: Sample, config: StatsConfig, seed: int | None = None, *,
            torch_device: str | None = None) -> Comparison:
    """Every statistic of `current` against `reference`; seeded, so the same windows give the same answer.

    BLAS runs on `config.threads` threads: on small matrices, or on cores shared with an event
    loop, OpenBLAS's worker threads cost more than they give (measured 20x slower on 200 rows).
    With no limit asked for, threadpoolctl is not entered at all: it scans the loaded libraries on
    every call, ~2 ms, a tenth of a GPU window. `torch_device` runs the embedding statistics on
    that torch device whatever `config.device` says: the tests and the bench run the torch code
    on "cpu" to hold it to the numpy path.
    """
    device = torch_device or resolve_torch_device(config)
    if config.threads is None:
        return _compare(reference, current, config, seed, device)
    with threadpool_limits(limits=config.threads):
        return _compare(reference, current, config, seed, device)


def _compare(reference: Sample, current: Sample, config: StatsConfig, seed: int | None,
             device: str | None) -> Comparison:
    started = time.perf_counter()
    if len(reference) < 5 or len(current) < 5:
        raise ValueError("each side needs at least 5 embeddings")
    rng = np.random.default_rng(config.seed if seed is None else seed)
    x = np.asarray(reference.embeddings, dtype=np.float32)
    y = np.asarray(current.embeddings, dtype=np.float32)
    timings: dict[str, float] = {}
    if device is None:
        emb = _embedding_numpy(x, y, config, rng, timings)
    else:
        emb = _embedding_torch(x, y, config, rng, device, timings)
    alpha = config.alpha
    stats: list[Statistic] = []
    kernel = emb.kernel
    stats.append(Statistic("mmd", kernel.mmd2, config.mmd_min, kernel.mmd_p,
                           _fires(kernel.mmd_p, kernel.mmd2, config.mmd_min, alpha),
                           {"bandwidth": f"{kernel.bandwidth:.6g}", "permutations": str(config.permutations)}))
    stats.append(Statistic("centroid", kernel.centroid_distance, config.centroid_min, kernel.centroid_p,
                           _fires(kernel.centroid_p, kernel.centroid_distance, config.centroid_min, alpha)))
    if emb.classifier is not None:
        clf = emb.classifier
        stats.append(Statistic("classifier_auc", clf.auc, config.auc_min, clf.p_value,
                               _fires(clf.p_value, clf.auc, config.auc_min, alpha),
                               {"folds": str(clf.folds), "dims": str(clf.dims)}))
    if emb.ks is not None:
        q = benjamini_hochberg(emb.ks.p_value)
        share = float(np.mean(q <= alpha))
        simes = float(q.min())
        stats.append(Statistic("ks_dims", share, config.ks_share_min, simes,
                               _fires(simes, share, config.ks_share_min, alpha),
                               {"dims": str(len(q)), "max_d": f"{float(emb.ks.statistic.max()):.6g}"}))
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
    return Comparison(tuple(stats), votes, votes >= config.min_votes, time.perf_counter() - started, timings,
                      "numpy" if device is None else f"torch:{device}")


class _Stopwatch:
    """Adds the seconds since the last lap to `timings[name]`: each statistic's share of a window."""

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - self.last
        self.last = now


def _stages(config: StatsConfig, watch: _Stopwatch, kernel: Callable[[], PermutationResult],
            classifier: Callable[[], ClassifierResult], ks: Callable[[], ColumnKS]) -> _Embedding:
    """The embedding statistics in one fixed order for either backend: they draw from one generator."""
    result = kernel()
    watch.lap("permutation")
    clf = None
    if config.classifier:
        clf = classifier()
        watch.lap("classifier")
    columns = None
    if config.ks:
        columns = ks()
        watch.lap("ks")
    return _Embedding(result, clf, columns)


def with_mean_direction(axes: Array, mean: Array) -> Array:
    """The principal axes plus the part of the pooled mean they miss, as one more unit row.

    Both windows are projected uncentred onto axes fitted on both (pooled), for two reasons.
    Axes fitted on the reference alone overfit it: its spread along them is inflated against
    any other sample's, and MMD and KS flagged 13 of 30 same-distribution pairs (measured).
    Pooled, the projection is the same whichever rows are labelled reference, so every
    permutation test stays exact. And a centroid survives only uncentred, with the mean's
    direction kept: centring on a mean left both centroids at ~0, their cosine rounding noise.
    """
    rest = mean - axes.T @ (axes @ mean)
    norm = float(np.linalg.norm(rest))
    if norm <= 1e-6 * max(float(np.linalg.norm(mean)), 1e-30):
        return axes
    return np.vstack([axes, (rest / norm)[None, :]]).astype(axes.dtype)


def _embedding_numpy(x: Array, y: Array, config: StatsConfig, rng: np.random.Generator,
                     timings: dict[str, float]) -> _Embedding:
    watch = _Stopwatch(timings)
    if config.pca_dims:
        mean, axes = principal_axes(np.concatenate([x, y]), config.pca_dims, rng)
        axes = with_mean_direction(axes, mean)
        x, y = x @ axes.T, y @ axes.T
    watch.lap("prepare")
    return _stages(config, watch, lambda: permutation_tests(x, y, config.permutations, rng),
                   lambda: domain_classifier(x, y, rng, config.classifier_folds, config.classifier_pca_dims,
                                             config.classifier_c),
                   lambda: ks_columns(x, y))


def _embedding_torch(x: Array, y: Array, config: StatsConfig, rng: np.random.Generator, device: str,
                     timings: dict[str, float]) -> _Embedding:
    """The numpy path's statistics, in the same order (one generator feeds them all), on one upload of both
    windows; every stage ends by copying its few numbers back, so each lap is the stage's device time."""
    import torch

    from drift.torch_classifier import domain_classifier_pooled, principal_axes_torch, with_mean_direction_torch
    from drift.torch_kernel import permutation_tests_pooled, pooled_tensor
    from drift.torch_ks import ks_pooled

    watch = _Stopwatch(timings)
    n = len(x)
    z = pooled_tensor(x, y, device)
    if config.pca_dims:
        with torch.no_grad():
            mean, axes = principal_axes_torch(z, config.pca_dims, rng)
            z = z @ with_mean_direction_torch(axes, mean).T
    watch.lap("prepare")
    return _stages(config, watch, lambda: permutation_tests_pooled(z, n, config.permutations, rng),
                   lambda: domain_classifier_pooled(z, n, rng, config.classifier_folds, config.classifier_pca_dims,
                                                    config.classifier_c),
                   lambda: ks_pooled(z, n))
