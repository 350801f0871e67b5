"""Runs the ordered detector chain on texts, isolating each detector's failure.

Detectors run concurrently; each has its own timeout. A detector that cannot answer is
counted and logged, then follows its rule: fail-open contributes no findings, fail-closed
contributes a `detector_unavailable` finding that the engine always blocks on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from detectors.abuse import PromptLeakage
from detectors.base import Detector, DetectorUnavailable, Direction, Finding, Priority
from detectors.registry import DetectorOptions
from proxy.policy.engine import UNAVAILABLE
from proxy.policy.metrics import PolicyMetrics

log = logging.getLogger("warden.detectors")


@dataclass
class ChainEntry:
    detector: Detector
    settings: DetectorOptions


class DetectorChain:
    def __init__(self, entries: list[ChainEntry], metrics: PolicyMetrics) -> None:
        self.entries = entries
        self.metrics = metrics

    def for_system_prompt(self, system_prompt: str) -> DetectorChain:
        """This exchange's chain: leakage detectors learn the prompt they must not see repeated."""
        if not any(isinstance(e.detector, PromptLeakage) for e in self.entries):
            return self
        entries = [ChainEntry(e.detector.for_prompt(system_prompt), e.settings)
                   if isinstance(e.detector, PromptLeakage) else e for e in self.entries]
        return DetectorChain(entries, self.metrics)

    def applies(self, direction: Direction) -> bool:
        return any(direction in e.detector.directions for e in self.entries)

    async def scan(self, texts: list[str], direction: Direction, priority: Priority = "request") -> list[list[Finding]]:
        entries = [e for e in self.entries if direction in e.detector.directions]
        merged: list[list[Finding]] = [[] for _ in texts]
        if not texts or not entries:
            return merged
        for result in await asyncio.gather(*(self._run(e, texts, priority) for e in entries)):
            for index, found in enumerate(result):
                merged[index].extend(found)
        return merged

    async def _run(self, entry: ChainEntry, texts: list[str], priority: Priority) -> list[list[Finding]]:
        name = entry.detector.name
        started = time.monotonic()
        try:
            async with asyncio.timeout(entry.settings.timeout_s):
                return await entry.detector.detect(texts, priority)
        except (DetectorUnavailable, TimeoutError) as exc:
            reason = str(exc) or f"timed out after {entry.settings.timeout_s:g}s"
        except Exception as exc:  # a detector bug must not take the request path down with it
            log.exception("detector %s raised", name)
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            self.metrics.detector_seconds.labels(name).observe(time.monotonic() - started)
        outcome = entry.settings.on_error
        self.metrics.detector_failures.labels(name, outcome).inc()
        log.warning("detector %s could not answer (%s); failing %s", name, reason, outcome)
        if outcome == "closed":
            return [[Finding(name, UNAVAILABLE, 1.0, explanation=reason)] for _ in texts]
        return [[] for _ in texts]
