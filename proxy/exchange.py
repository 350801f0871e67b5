"""The record of one request and the seam through which observers watch its answer.

Every wing reads or fills an `Exchange` (governance sets the tenant, the relay the timings,
policy the verdict, telemetry writes it as a row), so it lives at the bottom of the proxy,
below all of them, instead of inside the relay that once was its only writer.

An observer is asked once per OpenAI request, before it is forwarded, whether it wants to
watch; if it returns a tap, the relay hands the tap every chunk (as the backend sent it and as
the client received it) and says when the answer ended. Taps run on the hot path, so they only
keep references; anything slow is spawned by their owner after `end`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from detectors.base import Finding

if TYPE_CHECKING:
    from proxy.tracing.spans import RequestTrace


class Decided(Protocol):
    """A policy decision as the record keeps it: structural, so the record need not import the policy wing."""

    @property
    def finding(self) -> Finding: ...

    @property
    def action(self) -> Enum: ...

CLIENT_CLOSED = 499  # the status an exchange records when its client went away (nginx's convention)
MAX_FINDINGS = 32  # kept per exchange for observers (review shows them); the count goes on regardless


@dataclass(frozen=True, slots=True)
class FindingRecord:
    """One policy decision on one finding, as observers and reviewers see it."""

    direction: str
    detector: str
    label: str
    score: float
    action: str
    explanation: str


@dataclass(slots=True)
class VerdictSummary:
    """The strongest policy action over both directions, for the request's telemetry row."""

    action: str = "allow"
    count: int = 0
    categories: set[str] = field(default_factory=set)
    findings: list[FindingRecord] = field(default_factory=list)

    def add(self, action: str, decisions: Sequence[Decided], direction: str) -> None:
        order = ("allow", "flag", "redact", "block")
        if order.index(action) > order.index(self.action):
            self.action = action
        self.count += len(decisions)
        for decision in decisions:
            f = decision.finding
            self.categories.add(f.label)
            if len(self.findings) < MAX_FINDINGS:
                self.findings.append(FindingRecord(direction, f.detector, f.label, f.score,
                                                   decision.action.name.lower(), f.explanation))

    def note_allowed(self, findings: list[Finding], direction: str) -> None:
        """Findings no rule acted on: not counted, but kept (review samples those near a threshold)."""
        for f in findings:
            if len(self.findings) >= MAX_FINDINGS:
                return
            self.findings.append(FindingRecord(direction, f.detector, f.label, f.score, "allow", f.explanation))


@dataclass(slots=True)
class Exchange:
    """Timings and outcome of one request, filled in as it goes and recorded once at the end."""

    request_id: str
    started: float
    model: str | None = None
    route: str = ""  # the scanned API route it was answered on ("" for other routes)
    tenant: str = "anonymous"  # set by governance from the API key; "anonymous" when no keys are configured
    api_key_id: str = ""  # the key's public id (never the secret)
    template_id: str = ""  # lineage the client sent (X-Prompt-Template-Id / -Version headers), for observers
    template_version: str = ""
    backend: str | None = None  # the last backend tried (set per attempt)
    first_byte: float | None = None
    last_byte: float | None = None  # with `chunks` and `streamed`: the stream's pace (inter-token latency)
    chunks: int = 0
    streamed: bool = False  # the answer was an SSE stream
    upstream_time: float = 0.0
    status: int | None = None
    sent: bool = False
    verdict: VerdictSummary = field(default_factory=VerdictSummary)
    taps: list[Tap] = field(default_factory=list)  # observers of this exchange's answer
    complete: bool = False  # the answer was relayed to its end: no failure, no policy stop, client stayed
    deadline: float | None = None  # loop time by which the whole answer must be relayed (a tenant's limit)
    response_headers: dict[str, str] | None = None  # added to the client's response (rate-limit state)
    model_version: str = ""  # what the backend says it ran: lineage for the request's row
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of the prompt tokens, those the backend read from its prompt cache (priced apart)
    user: str = ""  # the end user the client named (`user` field or governance.user_header), cut to 128
    cost: float = 0.0  # what the request cost (proxy/governance/pricing.py), in `currency`
    currency: str = ""
    trace: RequestTrace | None = None  # its spans while tracing is on (proxy/tracing/); None costs nothing

    def sniff(self, data: bytes) -> None:
        """Lineage and usage from the backend's own answer, by pattern: no JSON parse on the hot path."""
        if not self.model_version:
            self.model_version = sniff_model_version(data)
        if b'"usage"' in data:
            # Chat and completions say prompt/completion_tokens; Responses and Messages input/output_tokens,
            # and a Messages stream sends them in two events (message_start, then message_delta).
            prompt, completion = _PROMPT_TOKENS.search(data), _COMPLETION_TOKENS.search(data)
            if prompt:
                self.prompt_tokens = int(prompt.group(1))
            if completion:
                self.completion_tokens = int(completion.group(1))
            cached = _CACHED_TOKENS.search(data)
            if cached:
                self.cached_tokens = int(cached.group(1))


_FINGERPRINT = re.compile(rb'"system_fingerprint"\s*:\s*"([^"\\]{1,128})"')
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,128})"')
_PROMPT_TOKENS = re.compile(rb'"(?:prompt|input)_tokens"\s*:\s*(\d{1,9})')
_COMPLETION_TOKENS = re.compile(rb'"(?:completion|output)_tokens"\s*:\s*(\d{1,9})')
_CACHED_TOKENS = re.compile(rb'"cached_tokens"\s*:\s*(\d{1,9})')  # OpenAI's prompt/input_tokens_details


def sniff_model_version(data: bytes) -> str:
    """The model and build the backend reports (`model`, `system_fingerprint`), without parsing the body."""
    model = _MODEL.search(data, 0, 4096)  # the head only, without copying it out
    if model is None:
        return ""
    fingerprint = _FINGERPRINT.search(data, 0, 4096)
    version = model.group(1).decode("utf-8", "replace")
    return f"{version}@{fingerprint.group(1).decode('utf-8', 'replace')}" if fingerprint else version


class Tap(Protocol):
    def start(self, status: int, content_type: str) -> None:
        """The answer's head. Comes again after a retried attempt: forget what came before."""

    def upstream(self, chunk: bytes) -> None:
        """Bytes as the backend sent them (before policy)."""

    def client(self, chunk: bytes) -> None:
        """Bytes as the client received them (after policy)."""

    def end(self, complete: bool) -> None:
        """Once per exchange, also when no answer came; `complete`: relayed to its end, nothing failed."""


Observer = Callable[["Exchange", dict[str, Any]], Tap | None]
