"""Runs the ordered detector chain on texts, isolating each detector's failure.

Detectors run concurrently; each has its own timeout. A detector that cannot answer is
counted and logged, then follows its rule: fail-open contributes no findings, fail-closed
contributes a `detector_unavailable` finding that the engine always blocks on.

Every detector reads the normalised view of each text (detectors/normalize.py: NFKC, format
characters dropped, look-alikes folded), and every placed finding is mapped back to the original
text here, before the engine and redaction see it. The chain is the one place for it: every
text on the request path (requests, answers, stream windows, the smoke check) and every
detector (in-line, scanner-backed, plugins) passes through `scan`, so none can forget it, each
text is normalised once however many detectors read it, and the offsets a detector returns
never leave the chain unmapped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace

from detectors.abuse import PromptLeakage
from detectors.base import Detector, DetectorUnavailable, Direction, Finding, Priority
from detectors.normalize import View, normalize
from detectors.registry import DetectorOptions
from proxy.policy.engine import UNAVAILABLE
from proxy.policy.metrics import PolicyMetrics

log = logging.getLogger("warden.detectors")


@dataclass
class ChainEntry:
    detector: Detector
    settings: DetectorOptions


INLINE_NORMALIZE = 64 * 1024  # characters; more than this is normalised in a worker thread


def _views(texts: list[str]) -> list[View]:
    return [normalize(text) for text in texts]


def _mapped(found: list[Finding], view: View) -> list[Finding]:
    if not view.changed:
        return found
    out = []
    for finding in found:
        if finding.start is not None and finding.end is not None:
            start, end = view.span(finding.start, finding.end)
            finding = replace(finding, start=start, end=end)
        out.append(finding)
    return out


class DetectorChain:
    """`normalized=False` hands detectors the raw texts (for measuring what normalisation buys)."""

    def __init__(self, entries: list[ChainEntry], metrics: PolicyMetrics, *, normalized: bool = True) -> None:
        self.entries = entries
        self.metrics = metrics
        self.normalized = normalized

    def for_system_prompt(self, system_prompt: str) -> DetectorChain:
        """This exchange's chain: leakage detectors learn the prompt they must not see repeated
        (normalised like the outputs it is compared with)."""
        if not any(isinstance(e.detector, PromptLeakage) for e in self.entries):
            return self
        prompt = normalize(system_prompt).text if self.normalized else system_prompt
        entries = [ChainEntry(e.detector.for_prompt(prompt), e.settings)
                   if isinstance(e.detector, PromptLeakage) else e for e in self.entries]
        return DetectorChain(entries, self.metrics, normalized=self.normalized)

    def split(self, beside: frozenset[str]) -> tuple[DetectorChain, DetectorChain]:
        """(the chain without the detectors named in `beside`, the chain of those alone)."""
        return (DetectorChain([e for e in self.entries if e.detector.name not in beside], self.metrics,
                              normalized=self.normalized),
                DetectorChain([e for e in self.entries if e.detector.name in beside], self.metrics,
                              normalized=self.normalized))

    def applies(self, direction: Direction) -> bool:
        return any(direction in e.detector.directions for e in self.entries)

    async def scan(self, texts: list[str], direction: Direction, priority: Priority = "request") -> list[list[Finding]]:
        entries = [e for e in self.entries if direction in e.detector.directions]
        merged: list[list[Finding]] = [[] for _ in texts]
        if not texts or not entries:
            return merged
        if not self.normalized:
            views = [View(text, text) for text in texts]
        elif sum(map(len, texts)) > INLINE_NORMALIZE:
            views = await asyncio.to_thread(_views, texts)
        else:
            views = _views(texts)
        seen = [view.text for view in views]
        for result in await asyncio.gather(*(self._run(e, seen, priority) for e in entries)):
            for index, found in enumerate(result):
                merged[index].extend(_mapped(found, views[index]))
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
