"""The spans of one request, named and attributed as OpenTelemetry's GenAI and HTTP conventions say.

A server span per request (continuing the caller's `traceparent`), a client span per upstream
attempt (its context is the `traceparent` the backend receives), and a span per policy scan with
each detection as an event. Context is passed explicitly (the request's `RequestTrace` rides on
its `Exchange`), never through OpenTelemetry's global context or provider, so two apps in one
process (tests, the admin listener) cannot mix their traces. No prompt or answer text is put on a
span: detections carry detector, label, score and action, never the matched text.

When tracing is off none of this runs: the request path checks one attribute for None.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Protocol
from urllib.parse import urlsplit

from opentelemetry.trace import NonRecordingSpan, Span, SpanKind, Status, StatusCode, Tracer, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

# gen_ai.operation.name per route (the GenAI conventions' well-known values).
OPERATIONS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "text_completion",
    "/v1/embeddings": "embeddings",
    "/v1/responses": "chat",
    "/v1/messages": "chat",
}
_FINISH = re.compile(rb'"(?:finish_reason|stop_reason)"\s*:\s*"([A-Za-z_]{1,32})"')


class Finished(Protocol):
    """What the request record (proxy/exchange.py) holds at the end, as the server span reads it."""

    model: str | None
    tenant: str
    api_key_id: str
    backend: str | None
    started: float
    first_byte: float | None
    streamed: bool
    upstream_time: float
    model_version: str
    prompt_tokens: int
    completion_tokens: int

    @property
    def verdict(self) -> _Verdict: ...


class _Verdict(Protocol):
    action: str


class Decision(Protocol):
    """A policy decision on one finding (proxy/policy/engine.py), read structurally."""

    @property
    def finding(self) -> _Finding: ...

    @property
    def action(self) -> _Named: ...


class _Finding(Protocol):
    @property
    def detector(self) -> str: ...

    @property
    def label(self) -> str: ...

    @property
    def score(self) -> float: ...


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class Tracing:
    """The app's tracer and the W3C trace-context propagator; the state holds None when tracing is off."""

    __slots__ = ("propagator", "tracer")

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer
        self.propagator = TraceContextTextMapPropagator()

    def start(self, method: str, route: str, path: str, headers: Mapping[str, str]) -> RequestTrace:
        parent = self.propagator.extract(headers) if "traceparent" in headers else None
        span = self.tracer.start_span(f"{method} {route}", context=parent, kind=SpanKind.SERVER, attributes={
            "http.request.method": method, "http.route": route, "url.path": path})
        return RequestTrace(self, span, OPERATIONS.get(route, "chat"))


class RequestTrace:
    """One request's server span and the children hung under it, ended in the order they finish."""

    __slots__ = ("_attempt_error", "_context", "finish_reasons", "operation", "span", "tracing", "upstream")

    def __init__(self, tracing: Tracing, span: Span, operation: str) -> None:
        self.tracing = tracing
        self.span = span
        self.operation = operation  # gen_ai.operation.name of the route
        self._context = set_span_in_context(span)
        self.upstream: Span | None = None  # the attempt in flight: its context is what the backend continues
        self._attempt_error: str | None = None
        self.finish_reasons: list[str] = []

    @property
    def trace_id(self) -> str | None:
        """The trace id when this trace is kept (exemplars and log lines link to it), else None."""
        context = self.span.get_span_context()
        return format(context.trace_id, "032x") if context.trace_flags.sampled else None

    def child(self, name: str, attributes: Mapping[str, AttributeValue] | None = None,
              kind: SpanKind = SpanKind.INTERNAL) -> Span:
        return self.tracing.tracer.start_span(name, context=self._context, kind=kind, attributes=attributes)

    # -- the upstream attempts (proxy/relay.py) --------------------------------------------------
    def begin_attempt(self, backend: str, group: str, attempt: int, model: str | None) -> None:
        url = urlsplit(backend)
        operation = self.operation
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": operation, "server.address": url.hostname or "",
            "server.port": url.port or (443 if url.scheme == "https" else 80), "warden.backend": backend,
            "warden.upstream.group": group, "warden.attempt": attempt + 1}
        if model:
            attributes["gen_ai.request.model"] = model
        self.upstream = self.child(f"{operation} {model}" if model else operation, attributes, SpanKind.CLIENT)
        self._attempt_error = None

    def inject(self, headers: MutableMapping[str, str]) -> None:
        """The backend continues the trace under this attempt's span (a caller's own `traceparent` is replaced)."""
        if self.upstream is not None:  # what TraceContextTextMapPropagator.inject writes, without its generics
            ctx = self.upstream.get_span_context()
            headers["traceparent"] = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
            if ctx.trace_state:
                headers["tracestate"] = ctx.trace_state.to_header()

    def upstream_status(self, status: int) -> None:
        if self.upstream is not None:
            self.upstream.set_attribute("http.response.status_code", status)

    def attempt_failed(self, error: str) -> None:
        self._attempt_error = error

    def end_attempt(self, record: Finished) -> None:
        span, self.upstream = self.upstream, None
        if span is None:
            return
        if self._attempt_error is not None:
            span.set_attribute("error.type", self._attempt_error)
            span.set_status(Status(StatusCode.ERROR, self._attempt_error))
        else:
            attributes: dict[str, AttributeValue] = {}
            _usage(attributes, record, self.finish_reasons)
            span.set_attributes(attributes)
        span.end()

    def sniff(self, data: bytes) -> None:
        """Finish reasons from the answer's bytes (per chunk, only when traced): no JSON parse."""
        if b"_reason" in data:
            for match in _FINISH.finditer(data):
                reason = match.group(1).decode()
                if reason not in self.finish_reasons and len(self.finish_reasons) < 8:
                    self.finish_reasons.append(reason)

    # -- policy scans (proxy/policy/service.py) ---------------------------------------------------
    def begin_scan(self, direction: str, texts: int) -> Span:
        return self.child(f"warden.scan {direction}", {"warden.direction": direction, "warden.texts": texts})

    @staticmethod
    def end_scan(span: Span, action: str, decisions: Iterable[Decision], failed: BaseException | None = None) -> None:
        if failed is not None:
            span.record_exception(failed)
            span.set_status(Status(StatusCode.ERROR, type(failed).__name__))
        else:
            span.set_attribute("warden.verdict", action)
            for decision in decisions:
                f = decision.finding
                span.add_event("warden.detection", {"warden.detector": f.detector, "warden.label": f.label,
                                                    "warden.score": float(f.score),
                                                    "warden.action": decision.action.name.lower()})
        span.end()

    # -- the end of the request (proxy/app/middleware.py) ----------------------------------------
    def finish(self, record: Finished, status: int, error: str | None = None) -> None:
        span = self.span
        if self.upstream is not None:  # cancelled mid-attempt: the attempt ends with the request
            self.end_attempt(record)
        if isinstance(span, NonRecordingSpan):
            span.end()
            return
        attributes: dict[str, AttributeValue] = {"http.response.status_code": status, "warden.tenant": record.tenant,
                                                 "warden.verdict": record.verdict.action}
        if record.api_key_id:
            attributes["warden.key_id"] = record.api_key_id
        if record.backend:
            attributes["warden.backend"] = record.backend
        if record.model:
            attributes["gen_ai.operation.name"] = self.operation
            attributes["gen_ai.request.model"] = record.model
            attributes["warden.upstream_time_s"] = record.upstream_time
            _usage(attributes, record, self.finish_reasons)
        if record.streamed and record.first_byte is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = record.first_byte - record.started
        span.set_attributes(attributes)  # one call: each set_attribute takes the span's lock
        if status >= 500 or error is not None:
            span.set_status(Status(StatusCode.ERROR, error or f"HTTP {status}"))
        span.end()


def _usage(attributes: dict[str, AttributeValue], record: Finished, finish_reasons: list[str]) -> None:
    if record.model_version:
        attributes["gen_ai.response.model"] = record.model_version.partition("@")[0]
    if record.prompt_tokens:
        attributes["gen_ai.usage.input_tokens"] = record.prompt_tokens
    if record.completion_tokens:
        attributes["gen_ai.usage.output_tokens"] = record.completion_tokens
    if finish_reasons:
        attributes["gen_ai.response.finish_reasons"] = finish_reasons
