"""Where a window's result goes: rows for ClickHouse (one per statistic, plus the verdict and the
reservoir sample) and the latest values per stream for Prometheus, read at scrape time.

With encryption at rest the reservoir's embeddings are sealed (an embedding can be inverted back
towards its text): `embedding` stays empty and `attrs['sealed_embedding']` holds the float32
vector sealed under the data key, bound to its model and stream; reference.py opens it. That is
~3 us a row, 32 rows once per window, so it runs where the window is published.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from drift import WindowResult
from proxy.sealing import Sealer

Emit = Callable[[str, dict[str, Any]], None]
LABELS = ["model", "stream"]
SEALED_EMBEDDING = "sealed_embedding"


def embedding_aad(model: str, stream: str) -> bytes:
    return f"drift_samples/{model}/{stream}".encode()


def window_rows(result: WindowResult, min_votes: int) -> list[dict[str, Any]]:
    job, comparison = result.job, result.comparison
    common = {
        "ts": int(job.window_end * 1000), "window_start": int(job.window_start * 1000), "model": job.key.model,
        "stream": job.key.stream, "sample_size": len(job.current), "reference_id": job.reference.id,
    }
    extra = {"window": str(job.index), "reference_size": str(len(job.reference.sample))}
    rows = [{**common, "statistic": s.name, "value": s.value, "threshold": s.threshold, "p_value": s.p_value,
             "drifted": s.drifted, "attrs": {**s.attrs, **extra}} for s in comparison.statistics]
    rows.append({**common, "statistic": "verdict", "value": float(comparison.votes), "threshold": float(min_votes),
                 "p_value": None, "drifted": comparison.drifted,
                 "attrs": {**extra, "alert": str(int(result.alert)),
                           "elapsed_ms": f"{comparison.elapsed_s * 1e3:.1f}"}})
    return rows


def sample_rows(result: WindowResult, sealer: Sealer | None = None) -> list[dict[str, Any]]:
    job = result.job
    rows = [{"ts": int(job.window_end * 1000), "window_start": int(job.window_start * 1000), "model": job.key.model,
             "stream": job.key.stream, "reference_id": job.reference.id, "embedding": [float(v) for v in row],
             "attrs": {"window": str(job.index)}} for row in job.samples]
    if sealer is not None:
        aad = embedding_aad(job.key.model, job.key.stream)
        for row, vector in zip(rows, job.samples, strict=True):
            row["embedding"] = []
            row["attrs"] = {"window": str(job.index), SEALED_EMBEDDING: sealer.seal_to_text(
                np.asarray(vector, dtype="<f4").tobytes(), aad)}
    return rows


class DriftSink(Collector):
    """Keeps the last window of each stream (bounded by the monitor's stream cap) and serves it as gauges."""

    def __init__(self, registry: CollectorRegistry, emit: Emit | None, min_votes: int,
                 queue_depth: Callable[[], int], sealer: Sealer | None = None) -> None:
        self.emit = emit
        self.sealer = sealer
        self.min_votes = min_votes
        self.queue_depth = queue_depth
        self._latest: dict[tuple[str, str], WindowResult] = {}
        self.windows = Counter("warden_drift_windows_total", "Drift windows evaluated, by verdict.",
                               ["drifted"], registry=registry)
        registry.register(self)

    def publish(self, result: WindowResult) -> None:
        self._latest[result.job.key.model, result.job.key.stream] = result
        self.windows.labels(str(result.comparison.drifted).lower()).inc()
        if self.emit is not None:
            for row in window_rows(result, self.min_votes):
                self.emit("drift_windows", row)
            for row in sample_rows(result, self.sealer):
                self.emit("drift_samples", row)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        value = GaugeMetricFamily("warden_drift_statistic", "Last window's value per statistic.",
                                  labels=[*LABELS, "statistic"])
        p_value = GaugeMetricFamily("warden_drift_p_value", "Last window's p-value per statistic.",
                                    labels=[*LABELS, "statistic"])
        drifted = GaugeMetricFamily("warden_drift_drifted", "1 when the last window's verdict was drift.",
                                    labels=LABELS)
        alert = GaugeMetricFamily("warden_drift_alert", "1 while drift has persisted (alert_after windows).",
                                  labels=LABELS)
        seconds = GaugeMetricFamily("warden_drift_window_seconds", "Time the last window's statistics took.",
                                    labels=LABELS)
        for (model, stream), result in self._latest.items():
            for stat in result.comparison.statistics:
                value.add_metric([model, stream, stat.name], stat.value)
                if stat.p_value is not None:
                    p_value.add_metric([model, stream, stat.name], stat.p_value)
            drifted.add_metric([model, stream], float(result.comparison.drifted))
            alert.add_metric([model, stream], float(result.alert))
            seconds.add_metric([model, stream], result.comparison.elapsed_s)
        yield from (value, p_value, drifted, alert, seconds)
        yield GaugeMetricFamily("warden_drift_queue_depth", "Texts waiting to be embedded for drift.",
                                value=self.queue_depth())
