"""Abuse: prompt injection and jailbreak attempts, and leakage of the system prompt into outputs.

All three read the chain's normalised view (detectors/normalize.py: look-alikes and invisible
characters cannot hide a phrase), the rules its leetspeak fold too. Three complementary signals,
each its own detector so the policy can weigh them apart:
- `InjectionRules`: phrasings that known attacks share, matched in-line (linear regexes);
- `ExemplarSimilarity`: cosine similarity, in the MiniLM embedding space of the scanner, to a
  curated exemplar set, catching paraphrases no rule anticipates;
- `PromptLeakage`: word n-gram overlap between an output and the request's system prompt.
A trained sequence classifier from a local path plugs in as an ordinary scanner classifier task.
"""

from __future__ import annotations

import re
from importlib import resources

import numpy as np

from detectors.base import DetectorUnavailable, Direction, Finding, Priority
from detectors.normalize import fold_leet
from detectors.runtime.client import ScannerClient, ScannerError

INJECTION_RULES: tuple[tuple[str, str, str], ...] = (
    ("PROMPT_INJECTION", r"\b(?:ignore|disregard|forget|override)\b[^.\n]{0,40}\b(?:previous|prior|above|earlier|"
     r"all|your)\b[^.\n]{0,20}\b(?:instructions?|rules|prompts?|directives|guidelines)\b",
     "asks the model to drop its instructions"),
    ("PROMPT_INJECTION", r"\b(?:reveal|print|show|repeat|output|tell me)\b[^.\n]{0,30}\b(?:system|hidden|initial|"
     r"secret)\s+(?:prompt|instructions|message)\b", "asks for the system prompt"),
    ("JAILBREAK", r"\b(?:DAN|do anything now|developer mode|jailbroken|jailbreak)\b", "a named jailbreak persona"),
    ("JAILBREAK", r"\b(?:pretend|act|imagine)\b[^.\n]{0,40}\b(?:no|without)\s+(?:any\s+)?(?:restrictions|rules|filters|"
     r"limitations|guidelines|ethics)\b", "role-play without restrictions"),
    ("PROMPT_INJECTION", r"(?:^|\n)\s*(?:system|assistant)\s*:\s", "a forged conversation turn"),
)


class InjectionRules:
    def __init__(self, name: str, directions: frozenset[Direction]) -> None:
        self.name = name
        self.directions = directions
        self._rules = [(label, re.compile(p, re.IGNORECASE), why) for label, p, why in INJECTION_RULES]
        self.labels: tuple[str, ...] = tuple(dict.fromkeys(label for label, _, _ in INJECTION_RULES))
        self.version = f"injection-rules:{len(self._rules)}"

    async def detect(self, texts: list[str], priority: Priority = "request") -> list[list[Finding]]:
        return [self.scan_text(text) for text in texts]

    def scan_text(self, text: str) -> list[Finding]:
        """The rules on the text (the chain's normalised view) and on its leetspeak fold
        (`1gn0re prev10us 1nstruct10ns`), which keeps offsets: a span is reported once."""
        spans: dict[tuple[str, int, int], str] = {}
        for variant in dict.fromkeys((text, fold_leet(text))):
            for label, rule, why in self._rules:
                for m in rule.finditer(variant):
                    spans.setdefault((label, m.start(), m.end()), why)
        return [Finding(self.name, label, 0.9, start, end, why) for (label, start, end), why in spans.items()]


def parse_exemplars(text: str) -> list[str]:
    """One attack per line; blank lines and `#` comments are skipped."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def default_exemplars() -> list[str]:
    return parse_exemplars(resources.files("detectors").joinpath("data/injection_exemplars.txt").read_text("utf-8"))


class ExemplarSimilarity:
    """Scores each text by its highest cosine similarity to a known attack; the rule sets the bar."""

    def __init__(self, name: str, task: str, client: ScannerClient, directions: frozenset[Direction],
                 exemplars: list[str], *, report_min: float = 0.5, timeout_s: float | None = None) -> None:
        self.name = name
        self.task = task
        self.client = client
        self.directions = directions
        self.exemplars = exemplars
        self.report_min = report_min
        self.timeout_s = timeout_s
        self.labels: tuple[str, ...] = ("PROMPT_INJECTION",)
        self.version = f"exemplars:{len(exemplars)}"
        self._matrix: np.ndarray | None = None
        self._described_on = -1  # the client's connection count when the exemplars were embedded

    async def _embed(self, texts: list[str], priority: Priority) -> np.ndarray:
        try:
            result = await self.client.scan(self.task, texts, priority=priority, timeout_s=self.timeout_s)
        except ScannerError as exc:
            raise DetectorUnavailable(f"{self.name}: {exc}") from exc
        if result.vectors is None:
            raise DetectorUnavailable(f"{self.name}: scanner task {self.task!r} is not an embedder")
        return result.vectors

    async def describe(self) -> None:
        """Embed the exemplars at start-up, with the same model the texts will use; again after the
        client reconnects, since a restarted scanner may embed with another model (cosine between two
        models' vectors means nothing)."""
        self._matrix = await self._embed(self.exemplars, "background")
        self._described_on = self._connections()

    def _connections(self) -> int:
        return int(getattr(self.client, "connections", 0))

    async def detect(self, texts: list[str], priority: Priority = "request") -> list[list[Finding]]:
        if self._matrix is None or self._connections() != self._described_on:
            await self.describe()
        assert self._matrix is not None
        vectors = await self._embed(texts, priority)
        similarity = vectors @ self._matrix.T  # both unit length: cosine
        found = []
        for row in similarity:
            best = int(np.argmax(row))
            score = float(row[best])
            found.append([Finding(self.name, "PROMPT_INJECTION", score, explanation=f"cosine {score:.2f} to known "
                                  f"attack: {self.exemplars[best][:80]!r}")] if score >= self.report_min else [])
        return found


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


class PromptLeakage:
    """Share of the system prompt's word n-grams that reappear in an output (1.0: recited whole).

    Needs the request's system prompt, so the proxy builds one per exchange with `for_prompt`.
    """

    def __init__(self, name: str, n: int = 5, system_prompt: str = "") -> None:
        self.name = name
        self.n = n
        self.directions: frozenset[Direction] = frozenset({"response"})
        self.labels: tuple[str, ...] = ("SYSTEM_PROMPT_LEAK",)
        self.version = f"ngram-overlap:{n}"
        self.system_prompt = system_prompt
        self._grams = _ngrams(system_prompt, n)

    def for_prompt(self, system_prompt: str) -> PromptLeakage:
        return PromptLeakage(self.name, self.n, system_prompt)

    async def detect(self, texts: list[str], priority: Priority = "request") -> list[list[Finding]]:
        if not self._grams:
            return [[] for _ in texts]
        out = []
        for text in texts:
            shared = len(self._grams & _ngrams(text, self.n)) / len(self._grams)
            out.append([Finding(self.name, "SYSTEM_PROMPT_LEAK", shared, explanation=f"{shared:.0%} of the system "
                                f"prompt's {self.n}-word sequences appear in the output")] if shared > 0 else [])
        return out
