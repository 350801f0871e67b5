"""Policy on the request path: scan the request before it leaves, choose the response transform.

Every verdict is recorded (metrics now, audit events through the sinks added at start-up),
whether or not it changed the traffic; in audit mode nothing is changed.

A request detector whose findings can change nothing (every rule that could match it only flags
or allows, and it fails open; or the mode is audit) is scanned *beside* the upstream call instead
of before it, when the caller passes a list for the task: its verdict is recorded when it lands,
before the answer's own scan is recorded, and the route settles it before the exchange ends.
Never a detector a redact or block rule could match: those still hold the request.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from detectors.base import Direction, Finding
from detectors.holdback import hold_for
from detectors.redact import Redactor
from detectors.scan_cache import one_off
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
        self._holding, self._beside = chain.split(self._flag_only())

    def apply(self, settings: PolicySettings) -> None:
        """A reloaded `policy:` section: rules and mode change at once; the detector chain stays as started."""
        self.settings = settings
        self.engine = PolicyEngine(settings)
        self._holding, self._beside = self.chain.split(self._flag_only())

    def _flag_only(self) -> frozenset[str]:
        """Request detectors whose findings can change nothing: every rule whose detector pattern
        matches them (whatever its label, threshold or scope) only flags or allows, and they fail
        open (a fail-closed detector that cannot answer blocks); in audit mode, all of them."""
        entries = [e for e in self.chain.entries if "request" in e.detector.directions]
        if not self.enforce:
            return frozenset(e.detector.name for e in entries)
        return frozenset(e.detector.name for e in entries if e.settings.on_error == "open" and all(
            rule.action in ("allow", "flag") for rule in self.settings.rules
            if rule.direction in ("both", "request") and fnmatch.fnmatchcase(e.detector.name, rule.detector)))

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

    async def check_request(self, payload: dict[str, Any], scope: Scope, trace: RequestTrace | None = None,
                            beside: list[asyncio.Task[None]] | None = None) -> bool:
        """Scan the request's texts; raise ContentBlocked, or redact in place and return True.

        With `beside`, the flag-only detectors' scan is started as a task appended to it, which
        the caller settles (`settle`) once the request has gone upstream."""
        slots = [slot for slot in text_slots(payload) if slot.get()]
        if not slots or not self.chain.applies("request"):
            return False
        texts = [slot.get() for slot in slots]
        chain = self.chain
        if beside is not None and self._beside.applies("request"):
            beside.append(asyncio.create_task(self._scan_beside(self._beside, texts, scope, trace)))
            chain = self._holding
            if not chain.applies("request"):
                return False
        try:
            return await self._hold(chain, slots, texts, scope, trace)
        except BaseException:
            await settle(beside or [])  # a blocked request's flags are recorded too
            raise

    async def _scan_beside(self, chain: DetectorChain, texts: list[str], scope: Scope,
                           trace: RequestTrace | None) -> None:
        if trace is None:
            verdict = self.engine.decide(await chain.scan(texts, "request"), "request", scope)
        else:
            verdict = await traced(trace, "request", texts, chain.scan, self.engine.decide, scope)
        self.record(verdict, "request", scope)

    async def _hold(self, chain: DetectorChain, slots: list[Any], texts: list[str], scope: Scope,
                    trace: RequestTrace | None) -> bool:
        if trace is None:
            verdict = self.engine.decide(await chain.scan(texts, "request"), "request", scope)
        else:
            verdict = await traced(trace, "request", texts, chain.scan, self.engine.decide, scope)
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
                           trace: RequestTrace | None = None,
                           after: list[asyncio.Task[None]] | None = None) -> TransformFactory | None:
        """How this request's answer is scanned, whatever it turns out to be (status, content type).
        `after`: the request's scans beside the upstream call, recorded before any answer verdict."""
        chain = self.chain.for_system_prompt(system_prompt)
        if not chain.applies("response"):
            return None

        async def scan_many(texts: list[str]) -> Verdict:
            await settle(after or [])
            if trace is not None:
                return await traced(trace, "response", texts, chain.scan, self.engine.decide, scope)
            return self.engine.decide(await chain.scan(texts, "response"), "response", scope)

        async def scan_one(text: str) -> Verdict:  # a stream's window: not kept by the findings caches
            await settle(after or [])
            with one_off():
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


async def settle(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for a request's scans beside the upstream call (their verdicts recorded); cancelled, cancel them."""
    if not tasks or all(task.done() for task in tasks):
        return
    try:
        await asyncio.gather(*tasks)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        raise


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
