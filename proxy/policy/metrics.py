"""Detection and policy metrics, on the proxy's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from proxy.metrics import OVERHEAD_BUCKETS


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
