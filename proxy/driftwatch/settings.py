"""The `drift:` section of warden.yaml, and its translation to the pure `drift` package's configs.

Off by default: drift needs an embedding task in the scanner (`scanner.models` entry with
`kind: embedder`, named by `embed_task`) and costs a window's statistics every `window.size`
sampled requests; turning it on is a deliberate choice, checked at start.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from drift.config import EMBEDDING_STATISTICS, MonitorConfig, StatsConfig, WindowConfig
from proxy.section import Section


class DriftWindowSettings(Section):
    kind: Literal["tumbling", "sliding"] = "tumbling"
    size: int = Field(500, ge=5, description="rows per window (tumbling) or held (sliding)")
    min_size: int = Field(50, ge=5, description="fewest rows a time-closed or sliding window is evaluated on")
    max_age_s: float | None = Field(None, gt=0, description="close a tumbling window this long after it opened")
    step: int = Field(100, ge=1, description="sliding: evaluate every `step` new rows")


class DriftReferenceSettings(Section):
    source: Literal["first", "file", "clickhouse"] = Field(
        "first", description="first: the first `size` rows of each stream after start; file: an .npz with one "
        "array per `model|stream`; clickhouse: drift_samples rows between `start` and `end`")
    size: int = Field(500, ge=5)
    path: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    @model_validator(mode="after")
    def _source_needs(self) -> DriftReferenceSettings:
        if self.source == "file" and not self.path:
            raise ValueError("reference.source file needs reference.path")
        if self.source == "clickhouse" and (self.start is None or self.end is None):
            raise ValueError("reference.source clickhouse needs reference.start and reference.end")
        return self


class DriftTestSettings(Section):
    alpha: float = Field(0.05, gt=0, lt=1)
    permutations: int = Field(200, ge=19)
    pca_dims: int | None = Field(None, ge=2,
                                 description="project both windows on their pooled principal directions first")
    classifier: bool = True
    classifier_pca_dims: int | None = Field(32, ge=2)
    classifier_folds: int = Field(5, ge=2)
    ks: bool = True
    mmd_min: float = 0.0
    auc_min: float = 0.55
    ks_share_min: float = Field(0.0, ge=0, le=1)
    centroid_min: float = 0.0
    psi_max: float = Field(0.2, gt=0)
    votes: list[str] = Field(default_factory=lambda: list(EMBEDDING_STATISTICS))
    min_votes: int = Field(2, ge=1)
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    threads: int | None = Field(1, ge=1, description="BLAS threads per window (1 leaves a core to the event loop)")


class DriftSettings(Section):
    enabled: bool = False
    embed_task: str = Field("embed", description="the scanner task (kind: embedder) that embeds texts")
    streams: list[Literal["prompt", "output"]] = Field(default_factory=lambda: ["prompt", "output"])  # type: ignore[arg-type]
    per_tenant: bool = Field(False, description="a stream per tenant as well as per model and route")
    sample_rate: float = Field(1.0, ge=0, le=1, description="share of requests embedded")
    max_queue: int = Field(1024, ge=1, description="texts waiting to be embedded; beyond it they are dropped")
    batch_size: int = Field(32, ge=1, description="texts per scanner call")
    max_text_chars: int = Field(4000, ge=1, description="texts are cut to this before embedding")
    max_pending_windows: int = Field(4, ge=1, description="closed windows waiting for statistics; beyond, dropped")
    window: DriftWindowSettings = DriftWindowSettings()
    reference: DriftReferenceSettings = DriftReferenceSettings()
    tests: DriftTestSettings = DriftTestSettings()
    reservoir_size: int = Field(32, ge=0, description="embeddings per window kept in drift_samples")
    alert_after: int = Field(3, ge=1)
    clear_after: int = Field(3, ge=1)
    max_streams: int = Field(64, ge=1)
    toxicity_detectors: list[str] = Field(default_factory=lambda: ["toxicity"])
    pii_detectors: list[str] = Field(default_factory=lambda: ["pii"])
    tick_s: float = Field(1.0, gt=0, description="how often time-closed windows are looked for")

    def monitor_config(self) -> MonitorConfig:
        t = self.tests
        tests = StatsConfig(
            alpha=t.alpha, permutations=t.permutations, pca_dims=t.pca_dims, classifier=t.classifier,
            classifier_pca_dims=t.classifier_pca_dims, classifier_folds=t.classifier_folds, ks=t.ks,
            mmd_min=t.mmd_min, auc_min=t.auc_min, ks_share_min=t.ks_share_min, centroid_min=t.centroid_min,
            psi_max=t.psi_max, votes=tuple(t.votes), min_votes=t.min_votes, device=t.device, threads=t.threads,
        )
        w = self.window
        window = WindowConfig(kind=w.kind, size=w.size, min_size=min(w.min_size, w.size), max_age_s=w.max_age_s,
                              step=w.step)
        return MonitorConfig(tests=tests, window=window, reference_size=self.reference.size,
                             reservoir_size=self.reservoir_size, alert_after=self.alert_after,
                             clear_after=self.clear_after, max_streams=self.max_streams)
