"""Secrets, credentials and canary strings: patterns cheap enough to run in-line.

Regular expressions here are linear and the proxy only hands them bounded texts (a request's
messages, a stream's hold-back window); texts over `INLINE_LIMIT` go to a worker thread.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable

from detectors.base import Direction, Finding, Priority
from detectors.holdback import literal_tail, token_tail

INLINE_LIMIT = 64 * 1024

# (label, pattern, why) — each is a well-known, vendor-documented token shape.
SECRET_PATTERNS: tuple[tuple[str, str, str], ...] = (
    ("AWS_ACCESS_KEY", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", "AWS access key id shape"),
    ("PRIVATE_KEY", r"-----BEGIN (?:RSA |EC |OPENSSH |DSA |PGP )?PRIVATE KEY(?: BLOCK)?-----", "PEM key header"),
    ("GITHUB_TOKEN", r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b", "GitHub token prefix"),
    ("SLACK_TOKEN", r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b", "Slack token prefix"),
    ("OPENAI_KEY", r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}\b", "OpenAI-style secret key prefix"),
    ("JWT", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b", "JSON Web Token"),
    ("GOOGLE_API_KEY", r"\bAIza[0-9A-Za-z_-]{35}\b", "Google API key prefix"),
)

PEM_HEADERS = [f"-----BEGIN {kind}PRIVATE KEY{block}-----" for kind in ("", "RSA ", "EC ", "OPENSSH ", "DSA ", "PGP ")
               for block in ("", " BLOCK")]


class PatternDetector:
    """Secret shapes plus configured canary strings (whose appearance in output means leakage)."""

    def __init__(
        self,
        name: str,
        directions: frozenset[Direction],
        *,
        secrets: bool = True,
        canaries: Iterable[str] = (),
    ) -> None:
        self.name = name
        self.directions = directions
        rules = list(SECRET_PATTERNS) if secrets else []
        rules += [("CANARY", re.escape(c), "configured canary string") for c in canaries if c]
        self._rules = [(label, re.compile(pattern), why) for label, pattern, why in rules]
        self.labels = tuple(dict.fromkeys(label for label, _, _ in rules))
        self.version = f"patterns:{len(self._rules)}"
        # Shapes with spaces in them, which a stream must hold while their start is at its tail.
        self._literals = [c for c in canaries if c and any(ch.isspace() for ch in c)] + PEM_HEADERS

    def holdback(self, text: str) -> int:
        """Every secret shape is one token; canary phrases and PEM headers are literals with spaces."""
        return max(token_tail(text), literal_tail(text, self._literals))

    def scan_text(self, text: str) -> list[Finding]:
        return [
            Finding(self.name, label, 1.0, m.start(), m.end(), why)
            for label, pattern, why in self._rules
            for m in pattern.finditer(text)
        ]

    async def detect(self, texts: list[str], priority: Priority = "request") -> list[list[Finding]]:
        if sum(map(len, texts)) > INLINE_LIMIT:
            return await asyncio.to_thread(lambda: [self.scan_text(t) for t in texts])
        return [self.scan_text(t) for t in texts]
