"""A regex PII detector for unit tests of the stream guard's logic (the real one is presidio in the scanner)."""

from __future__ import annotations

import re

from detectors.base import Direction, Finding, Priority

PATTERNS = {
    "EMAIL_ADDRESS": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    "CREDIT_CARD": r"\b(?:\d{4}[ -]?){3}\d{4}\b",
    "US_SSN": r"\b\d{3}-\d{2}-\d{4}\b",
    "PHONE_NUMBER": r"\(?\b\d{3}\)?[ .-]?\d{3}[.-]\d{4}\b",
}


class RegexPII:
    name = "pii"
    version = "test-regex"
    labels = tuple(PATTERNS)
    directions: frozenset[Direction] = frozenset({"request", "response"})

    def __init__(self) -> None:
        self.calls = 0
        self._compiled = [(label, re.compile(p)) for label, p in PATTERNS.items()]

    async def detect(self, texts: list[str], priority: Priority = "request") -> list[list[Finding]]:
        self.calls += 1
        return [[Finding(self.name, label, 0.99, m.start(), m.end()) for label, rx in self._compiled
                 for m in rx.finditer(text)] for text in texts]
