"""What every detector is and returns, whether it runs in the scanner process or in-line.

Detectors declare what they detect, their version (lineage for every finding) and which side
of the exchange they apply to; findings carry an explanation because a reviewer must see why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Direction = Literal["request", "response"]
Priority = Literal["request", "background"]


@dataclass(frozen=True, slots=True)
class Finding:
    detector: str
    label: str
    score: float
    start: int | None = None  # character offsets into the scanned text, when the finding has a place
    end: int | None = None
    explanation: str = ""

    @property
    def has_span(self) -> bool:
        return self.start is not None and self.end is not None


class DetectorUnavailable(Exception):
    """The detector could not give an answer (scanner down, overloaded, timed out, crashed)."""


class Detector(Protocol):
    name: str
    version: str
    labels: tuple[str, ...]
    directions: frozenset[Direction]

    async def detect(self, texts: list[str], priority: Priority = "request") -> list[list[Finding]]:
        """Findings per text, in order. Raises DetectorUnavailable when it cannot answer."""
        ...
