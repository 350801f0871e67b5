"""Builds the detector chain and the policy service from config at start-up."""

from __future__ import annotations

import logging

from detectors.builtin_types import detector_types
from detectors.registry import DetectorOptions
from detectors.runtime.client import ScannerClient
from detectors.scan_cache import FindingsCache
from proxy.policy.chain import ChainEntry, DetectorChain
from proxy.policy.metrics import PolicyMetrics
from proxy.policy.service import PolicyService
from proxy.policy.settings import PolicySettings
from proxy.tasks import TaskOwner

log = logging.getLogger("warden.policy")


async def build_policy(detectors: list[DetectorOptions], policy: PolicySettings, scanner: ScannerClient | None,
                       metrics: PolicyMetrics, background: TaskOwner) -> PolicyService:
    types = detector_types()  # each entry's type, built-in or plugin, declares its factory
    entries = [ChainEntry(await types.build(d, scanner), d) for d in detectors]
    for entry in entries:
        log.info("detector %s (%s) on %s, fail-%s", entry.detector.name, entry.detector.version,
                 "+".join(sorted(entry.detector.directions)), entry.settings.on_error)
    log.info("policy: %s mode, %d rule(s), stream window %d chars", policy.mode, len(policy.rules),
             policy.stream_window_chars)
    for entry in entries:  # failure counters exist from the start, at 0, so rate() and alerts see them
        metrics.detector_failures.labels(entry.detector.name, entry.settings.on_error)
        cache = getattr(entry.detector, "cache", None)
        if isinstance(cache, FindingsCache):
            cache.on_lookup = metrics.count_cache(entry.detector.name)
    return PolicyService(policy, DetectorChain(entries, metrics), metrics, background)
