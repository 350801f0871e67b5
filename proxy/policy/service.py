"""Policy on the request path: scan the request before it leaves, choose the response transform.

Every verdict is recorded (metrics now, audit events through the sinks added at start-up),
whether or not it changed the traffic; in audit mode nothing is changed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from detectors.base import Direction, Finding
from detectors.holdback import hold_for
from detectors.redact import Redactor
from proxy.errors import ContentBlocked
from proxy.policy.audit import AuditTap
from proxy.policy.buffered import JsonEnforcer
from proxy.policy.chain import DetectorChain
from proxy.policy.engine import Action, PolicyEngine, Scope, Verdict
from proxy.policy.hooks import ResponseTransform
from proxy.policy.metrics import PolicyMetrics
from proxy.policy.settings import PolicySettings
from proxy.policy.stream import StreamEnforcer
from proxy.tasks import TaskOwner
from proxy.tracing.spans import RequestTrace
from proxy.wire.streams import codec_for
from proxy.wire.texts import text_slots

log = logging.getLogger("warden.policy")
AuditSink = Callable[[Verdict, str, Scope], None]
TransformFactory = Callable[[str, int], ResponseTransform | None]


class PolicyService:
    def __init__(self, settings: PolicySettings, chain: DetectorChain, metrics: PolicyMetrics,
                 background: TaskOwner) -> None:
        self.settings = settings
        self.chain = chain
        self.metrics = metrics
        self.engine = PolicyEngine(settings)
        self.background = background
        self.sinks: list[AuditSink] = []
        self._salt = os.environ.get(settings.redaction_salt_env, "").encode()

    def apply(self, settings: PolicySettings) -> None:
        """A reloaded `policy:` section: rules and mode change at once; the detector chain stays as started."""
        self.settings = settings
        self.engine = PolicyEngine(settings)

    def redactor(self) -> Redactor:
        """One per request or response, so numbering is consistent within it and nowhere else."""
        return Redactor(self.settings.redaction, salt=self._salt)

    @property
    def enforce(self) -> bool:
        return self.settings.mode == "enforce"

    def record(self, verdict: Verdict, direction: str, scope: Scope) -> None:
        self.metrics.verdicts.labels(direction, verdict.action.name.lower(), scope.tenant).inc()
        for decision in verdict.decisions:
            f = decision.finding
            self.metrics.detections.labels(f.detector, f.label, decision.action.name.lower(), direction,
                                           scope.tenant).inc()
        if scope.summary is not None and verdict.decisions:
            scope.summary.add(verdict.action.name.lower(), verdict.decisions, direction)
        if scope.summary is not None and verdict.allowed:
            scope.summary.note_allowed(verdict.allowed, direction)
        for sink in self.sinks:
            sink(verdict, direction, scope)

    async def check_request(self, payload: dict[str, Any], scope: Scope, trace: RequestTrace | None = None) -> bool:
        """Scan the request's texts; raise ContentBlocked, or redact in place and return True."""
        slots = [slot for slot in text_slots(payload) if slot.get()]
        if not slots or not self.chain.applies("request"):
            return False
        texts = [slot.get() for slot in slots]
        if trace is None:
            verdict = self.engine.decide(await self.chain.scan(texts, "request"), "request", scope)
        else:
            verdict = await traced(trace, "request", texts, self.chain.scan, self.engine.decide, scope)
        self.record(verdict, "request", scope)
        if not self.enforce or verdict.action < Action.REDACT:
            return False
        redactor = self.redactor()
        blocked = verdict.action == Action.BLOCK
        for index, slot in enumerate(slots):
            # A blocked request is not sent, but observers (review) keep it: every placed finding is cut out.
            spans = [d.finding for d in verdict.decisions
                     if d.text_index == index and d.finding.has_span] if blocked else verdict.redactions(index)
            if spans:
                slot.set(redactor.redact(slot.get(), spans))
        if blocked:
            raise ContentBlocked(f"the request was blocked by policy ({verdict.reasons})")
        return True

    def response_transform(self, scope: Scope, system_prompt: str = "", api: str = "chat",
                           trace: RequestTrace | None = None) -> TransformFactory | None:
        """How this request's answer is scanned, whatever it turns out to be (status, content type)."""
        chain = self.chain.for_system_prompt(system_prompt)
        if not chain.applies("response"):
            return None

        async def scan_many(texts: list[str]) -> Verdict:
            if trace is not None:
                return await traced(trace, "response", texts, chain.scan, self.engine.decide, scope)
            return self.engine.decide(await chain.scan(texts, "response"), "response", scope)

        async def scan_one(text: str) -> Verdict:
            if trace is not None:
                return await traced(trace, "response", [text], chain.scan, self.engine.decide, scope)
            return self.engine.decide(await chain.scan([text], "response"), "response", scope)

        async def audit(texts: list[str]) -> None:
            findings = await chain.scan(texts, "response", priority="background")
            self.record(self.engine.decide(findings, "response", scope), "response", scope)

        def spawn(work: Awaitable[None]) -> None:
            self.background.spawn(work, "audit-scan")  # type: ignore[arg-type]

        def record(verdict: Verdict) -> None:
            self.record(verdict, "response", scope)

        def unscanned(reason: str) -> None:
            self.metrics.unscanned.labels(reason).inc()

        answering = [e for e in chain.entries if "response" in e.detector.directions]
        fail_closed = any(e.settings.on_error == "closed" for e in answering)

        def holdback(text: str) -> int:
            return hold_for([e.detector for e in answering], text)

        def factory(content_type: str, status: int) -> ResponseTransform | None:
            # Every answer on a scanned route is read, error bodies (they can echo the prompt) and
            # unexpected content types included: JSON and SSE by their shape, anything else as text.
            is_sse = content_type == "text/event-stream"
            if not self.enforce:
                return AuditTap(is_sse, self.settings.max_response_bytes, audit, spawn, codec_for(api))
            if is_sse:
                return StreamEnforcer(scan_one, record, self.settings.stream_window_chars, self.redactor(),
                                      self.settings.max_response_bytes, codec=codec_for(api), scan_many=scan_many,
                                      holdback=holdback, max_hold_s=self.settings.stream_max_hold_s,
                                      fail_closed=fail_closed, gauges=self.metrics.streams)
            return JsonEnforcer(scan_many, record, self.redactor(), self.settings.max_response_bytes, unscanned,
                                oversize=self.settings.oversize, plain=content_type != "application/json")

        return factory


async def traced(trace: RequestTrace, direction: Direction, texts: list[str],
                 scan: Callable[[list[str], Direction], Awaitable[list[list[Finding]]]],
                 decide: Callable[[list[list[Finding]], Direction, Scope], Verdict], scope: Scope) -> Verdict:
    """A scan and its decision as one span, each detection an event on it (no text: labels and scores)."""
    span = trace.begin_scan(direction, len(texts))
    try:
        verdict = decide(await scan(texts, direction), direction, scope)
    except BaseException as exc:
        trace.end_scan(span, "", (), exc)
        raise
    trace.end_scan(span, verdict.action.name.lower(), verdict.decisions)
    return verdict
