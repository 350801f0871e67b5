"""What the drift statistics and the monitor are asked to do: plain frozen values, validated by their owner.

The proxy builds these from its pydantic settings; keeping them plain here keeps `drift`
importable without the proxy and lets a notebook build them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

EMBEDDING_STATISTICS = ("mmd", "classifier_auc", "ks_dims", "centroid")


@dataclass(frozen=True)
class StatsConfig:
    """A statistic fires when its p-value is under `alpha` and its effect reaches its floor.

    The floors (`mmd_min`, `auc_min`, `ks_share_min`, `centroid_min`) keep a large window from
    alarming on a change that is significant but too small to matter; at 0 a statistic is a
    plain level-alpha test. The window is drifted when at least `min_votes` of the statistics
    named in `votes` fire.
    """

    alpha: float = 0.05
    permutations: int = 200
    pca_dims: int | None = None  # project both windows on their pooled top principal directions first
    classifier: bool = True
    classifier_pca_dims: int | None = 32
    classifier_folds: int = 5
    classifier_c: float = 1.0
    ks: bool = True
    mmd_min: float = 0.0
    auc_min: float = 0.55
    ks_share_min: float = 0.0
    centroid_min: float = 0.0
    psi_max: float = 0.2  # scalar signals: fire when PSI reaches this and the KS p-value is under alpha
    psi_bins: int = 10
    votes: tuple[str, ...] = EMBEDDING_STATISTICS
    min_votes: int = 2
    device: Literal["cpu", "cuda", "auto"] = "cpu"  # cuda/auto: every embedding statistic in torch
    seed: int = 0
    threads: int | None = 1  # BLAS threads for one window; None: the library's default (all cores)


@dataclass(frozen=True)
class WindowConfig:
    """The current window. Tumbling: evaluated when it holds `size` items, or `max_age_s` after its
    first item if it holds `min_size`, then emptied. Sliding: the last `size` items (none older
    than `max_age_s`), evaluated every `step` new items once `min_size` are held."""

    kind: Literal["tumbling", "sliding"] = "tumbling"
    size: int = 1000
    min_size: int = 100
    max_age_s: float | None = None
    step: int = 250


@dataclass(frozen=True)
class MonitorConfig:
    tests: StatsConfig = field(default_factory=StatsConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    reference_size: int = 1000  # the first N items of a stream become its reference unless one is pinned
    reservoir_size: int = 32  # embeddings kept per window for offline analysis
    alert_after: int = 3  # drifted windows in a row that raise the alert
    clear_after: int = 3  # clean windows in a row that clear it
    max_streams: int = 64
