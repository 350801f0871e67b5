"""Detection and policy metrics, on the proxy's registry."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from proxy.metrics import OVERHEAD_BUCKETS


class StreamGauges:
    """Streams under enforcement: how far their scans lag behind the model, and who waits now.

    `waiting` is a plain count the enforcers keep (one stream per pending scan) and the gauge reads
    it at scrape time, so the hot path pays an integer increment, not a metric update.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.waiting = 0
        waiting = Gauge("warden_stream_scans_waiting", "Enforced streams waiting on a scan right now.",
                        registry=registry)
        waiting.set_function(lambda: self.waiting)
        self.lag = Histogram("warden_stream_scan_lag_seconds", "Per enforced stream: the longest any of its "
                             "characters was held before release (hold-back plus scan time).",
                             buckets=(0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0), registry=registry)
        self.expired = Counter("warden_stream_hold_expired", "Enforced streams whose held text waited "
                               "policy.stream_max_hold_s for its scan, by the on_error applied.", ["outcome"],
                               registry=registry)

    def stream_done(self, largest_lag_s: float) -> None:
        self.lag.observe(largest_lag_s)

    def held_too_long(self, closed: bool) -> None:
        self.expired.labels("closed" if closed else "open").inc()


class PolicyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # Tenants come from the config (or "anonymous"), never from the client: the label stays bounded.
        self.detections = Counter("warden_detections", "Findings that a rule acted on.",
                                  ["detector", "label", "action", "direction", "tenant"], registry=registry)
        self.verdicts = Counter("warden_policy_verdicts", "Scans by their strongest action.",
                                ["direction", "action", "tenant"], registry=registry)
        self.detector_seconds = Histogram("warden_detector_seconds", "Time per detector call.", ["detector"],
                                          buckets=(*OVERHEAD_BUCKETS, 1.0, 2.5, 5.0), registry=registry)
        self.detector_failures = Counter("warden_detector_failures", "Detector calls that could not answer, "
                                         "by the fail rule applied.", ["detector", "outcome"], registry=registry)
        self.unscanned = Counter("warden_policy_unscanned", "Requests or responses passed without a scan, by reason.",
                                 ["reason"], registry=registry)
        self.scan_cache = Counter("warden_detector_cache", "Texts a scanner-backed detector answered from its "
                                  "findings cache (hit) or sent to the scanner (miss).", ["detector", "result"],
                                  registry=registry)
        self.streams = StreamGauges(registry)

    def count_cache(self, detector: str) -> Callable[[int, int], None]:
        """The (hits, misses) counter of one detector's findings cache, its two series bound once."""
        hit, miss = self.scan_cache.labels(detector, "hit"), self.scan_cache.labels(detector, "miss")

        def count(hits: int, misses: int) -> None:
            if hits:
                hit.inc(hits)
            if misses:
                miss.inc(misses)

        return count
