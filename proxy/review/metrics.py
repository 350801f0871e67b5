"""Review metrics on the proxy's registry.

Draws and labels are counted as they happen (children resolved once: strata and labels are
fixed sets). The queue's depth and the violation-rate estimates need the store and a pass over
its items, so the service computes them off the event loop when something changed and this
collector serves the last snapshot at scrape time: a scrape never touches SQLite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from proxy.review.estimates import RateEstimate
from proxy.review.sampler import STRATA
from proxy.review.store import LABELS


@dataclass(frozen=True)
class ReviewSnapshot:
    pending: int = 0  # drawn items still short of the reviews they need
    estimates: tuple[RateEstimate, ...] = ()


class ReviewMetrics(Collector):
    def __init__(self, registry: CollectorRegistry, model_label: Callable[[str | None], str]) -> None:
        self.model_label = model_label  # the proxy's bound on model names: review sees the client's strings
        self.snapshot = ReviewSnapshot()
        seen = Counter("warden_review_seen", "Exchanges the sampler considered, by stratum.", ["stratum"],
                       registry=registry)
        sampled = Counter("warden_review_sampled", "Exchanges drawn into the review queue, by stratum.",
                          ["stratum"], registry=registry)
        labels = Counter("warden_review_labels", "Labels reviewers gave, by label.", ["label"], registry=registry)
        self.seen = {s: seen.labels(s) for s in STRATA}
        self.sampled = {s: sampled.labels(s) for s in STRATA}
        self.labels = {label: labels.labels(label) for label in LABELS}
        registry.register(self)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot = self.snapshot
        yield GaugeMetricFamily("warden_review_queue_depth", "Drawn items still short of the reviews they need.",
                                value=snapshot.pending)
        rate = GaugeMetricFamily("warden_review_violation_rate", "Estimated share of traffic that violates "
                                 "policy (Horvitz-Thompson over the labelled sample), per model.", labels=["model"])
        low = GaugeMetricFamily("warden_review_violation_rate_low", "Lower end of the estimate's 95% interval.",
                                labels=["model"])
        high = GaugeMetricFamily("warden_review_violation_rate_high", "Upper end of the estimate's 95% interval.",
                                 labels=["model"])
        decided = GaugeMetricFamily("warden_review_decided_items", "Sampled items with a decided label, per model.",
                                    labels=["model"])
        for estimate in snapshot.estimates:
            if self.model_label(estimate.model) != estimate.model:
                continue  # over the model-label cap: left out rather than merged into "other"
            rate.add_metric([estimate.model], estimate.rate)
            low.add_metric([estimate.model], estimate.low)
            high.add_metric([estimate.model], estimate.high)
            decided.add_metric([estimate.model], estimate.decided)
        yield from (rate, low, high, decided)
