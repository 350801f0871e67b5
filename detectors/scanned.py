"""A detector whose model runs in the scanner process; the proxy side only shapes findings."""

from __future__ import annotations

from detectors.base import DetectorUnavailable, Direction, Finding, Priority
from detectors.runtime.client import ScannerClient, ScannerError


class ScannerDetector:
    def __init__(
        self,
        name: str,
        task: str,
        client: ScannerClient,
        directions: frozenset[Direction],
        *,
        report_min: float = 0.0,
        timeout_s: float | None = None,
    ) -> None:
        self.name = name
        self.task = task
        self.client = client
        self.directions = directions
        self.report_min = report_min
        self.timeout_s = timeout_s
        self.labels: tuple[str, ...] = ()
        self.version = "unknown"

    async def describe(self) -> None:
        """Learn labels and model version from the scanner, for findings' lineage."""
        info = (await self.client.ping()).get(self.task)
        if info is None:
            raise DetectorUnavailable(f"the scanner has no model for task {self.task!r}")
        self.labels = tuple(info.labels)
        self.version = f"{info.kind}:{info.model_version}"

    async def detect(self, texts: list[str], priority: Priority = "request") -> list[list[Finding]]:
        if not texts:
            return []
        try:
            result = await self.client.scan(self.task, texts, priority=priority, timeout_s=self.timeout_s)
        except ScannerError as exc:
            raise DetectorUnavailable(f"{self.name}: {exc}") from exc
        if result.spans is not None:
            return [[Finding(self.name, s.label, s.score, s.start, s.end, s.explanation) for s in row]
                    for row in result.spans]
        if result.scores is None:
            raise DetectorUnavailable(f"{self.name}: the scanner's {self.task!r} model returns no scores")
        return [
            [Finding(self.name, label, float(score), explanation=f"{self.task} model scored {label} {score:.3f}")
             for label, score in zip(result.labels, row, strict=True) if score >= self.report_min]
            for row in result.scores
        ]
