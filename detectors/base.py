"""What every detector is and returns, whether it runs in the scanner process or in-line.

Detectors declare what they detect, their version (lineage for every finding) and which side
of the exchange they apply to; findings carry an explanation because a reviewer must see why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

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


@runtime_checkable
class HoldsBack(Protocol):
    """A detector that can say where a stream may be cut (optional: a separate protocol, so that
    detectors and plugins that do not declare it still are `Detector`s).

    A stream is released as soon as no finding can still include the text; only the detector knows
    which tails its shapes could still grow from (detectors/holdback.py has the built-in rules).
    One that does not implement this is held a whole window, the conservative default.
    """

    def holdback(self, text: str) -> int:
        """How many trailing characters of `text` (the normalised view, as `detect` gets) could still
        be part of a finding not yet complete; `len(text)` when it cannot tell."""
        ...
