"""Builds the detector chain and the policy service from config at start-up."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from detectors.abuse import ExemplarSimilarity, InjectionRules, PromptLeakage, default_exemplars, parse_exemplars
from detectors.base import Detector, DetectorUnavailable
from detectors.patterns import PatternDetector
from detectors.runtime.client import ScannerClient, ScannerError
from detectors.scanned import ScannerDetector
from proxy.policy.chain import ChainEntry, DetectorChain
from proxy.policy.metrics import PolicyMetrics
from proxy.policy.service import PolicyService
from proxy.policy.settings import DetectorSettings, PolicySettings
from proxy.tasks import TaskOwner

log = logging.getLogger("warden.policy")


async def build_detector(settings: DetectorSettings, scanner: ScannerClient | None) -> Detector:
    directions = frozenset(settings.directions)
    if settings.type == "patterns":
        return PatternDetector(settings.name, directions, secrets=settings.secrets, canaries=settings.canaries)
    if settings.type == "injection_rules":
        return InjectionRules(settings.name, directions)
    if settings.type == "leakage":
        return PromptLeakage(settings.name, settings.ngram)
    if scanner is None or settings.task is None:
        raise RuntimeError(f"detector {settings.name!r} needs the scanner, which is not running")
    detector: ScannerDetector | ExemplarSimilarity
    if settings.type == "similarity":
        source = settings.exemplars_file
        exemplars = await asyncio.to_thread(
            lambda: parse_exemplars(Path(source).read_text(encoding="utf-8")) if source else default_exemplars())
        detector = ExemplarSimilarity(settings.name, settings.task, scanner, directions, exemplars,
                                      report_min=settings.report_min, timeout_s=settings.timeout_s)
    else:
        detector = ScannerDetector(settings.name, settings.task, scanner, directions,
                                   report_min=settings.report_min, timeout_s=settings.timeout_s)
    try:
        await detector.describe()
    except (DetectorUnavailable, ScannerError) as exc:
        # An external scanner may come up after the proxy: the detector's fail rule covers the gap.
        log.warning("detector %s: cannot describe its model yet (%s)", settings.name, exc)
    return detector


async def build_policy(detectors: list[DetectorSettings], policy: PolicySettings, scanner: ScannerClient | None,
                       metrics: PolicyMetrics, background: TaskOwner) -> PolicyService:
    entries = [ChainEntry(await build_detector(d, scanner), d) for d in detectors]
    for entry in entries:
        log.info("detector %s (%s) on %s, fail-%s", entry.detector.name, entry.detector.version,
                 "+".join(sorted(entry.detector.directions)), entry.settings.on_error)
    log.info("policy: %s mode, %d rule(s), stream window %d chars", policy.mode, len(policy.rules),
             policy.stream_window_chars)
    for entry in entries:  # failure counters exist from the start, at 0, so rate() and alerts see them
        metrics.detector_failures.labels(entry.detector.name, entry.settings.on_error)
    return PolicyService(policy, DetectorChain(entries, metrics), metrics, background)
