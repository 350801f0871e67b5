"""From settings to a tracer provider whose spans leave on a thread of their own, with every loss counted.

The SDK's BatchSpanProcessor drops spans when its queue is full (the usual case when the collector
is away: each export then retries until its timeout while spans keep coming) and says so only in a
log line. `SpanQueue` is the same design (a bounded queue on the loop's side, one exporting thread)
with its outcomes as numbers, read at scrape time by `SpanCounts`: an operator sees a missing
collector on /metrics, not in traces that quietly thin out.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from proxy.tracing.settings import OtelSettings

log = logging.getLogger("warden.tracing")
TRACES_PATH = "/v1/traces"


@dataclass(frozen=True)
class ExportPlan:
    """Where and how spans go, after the config and the standard variables were both read."""

    endpoint: str
    sample_ratio: float
    service_name: str
    headers: dict[str, str] | None = field(default=None, repr=False)  # None: the exporter reads OTEL_*_HEADERS

    @property
    def shown(self) -> str:
        """The endpoint for a log line: no user, password or query (credentials sometimes ride there)."""
        url = urlsplit(self.endpoint)
        return f"{url.scheme}://{url.hostname}{f':{url.port}' if url.port else ''}{url.path}"


def plan(settings: OtelSettings, environ: Mapping[str, str]) -> ExportPlan | None:
    """None when tracing is off: no endpoint anywhere, or the standard switches turn it off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" or \
            environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    if settings.endpoint:
        endpoint = _traces_url(settings.endpoint)
    elif environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        endpoint = environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]  # the signal's own URL, used as given
    elif environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        endpoint = _traces_url(environ["OTEL_EXPORTER_OTLP_ENDPOINT"])
    else:
        return None
    ratio = settings.sample_ratio
    if ratio is None:
        ratio = _ratio(environ.get("OTEL_TRACES_SAMPLER_ARG"))
    service = settings.service_name or environ.get("OTEL_SERVICE_NAME") or "warden"
    headers = {k: v.get_secret_value() for k, v in settings.headers.items()} if settings.headers else None
    return ExportPlan(endpoint, ratio, service, headers)


def _traces_url(base: str) -> str:
    base = base.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def _ratio(value: str | None) -> float:
    try:
        ratio = float(value) if value else 1.0
    except ValueError:
        return 1.0
    return ratio if 0.0 <= ratio <= 1.0 else 1.0


class SpanQueue(SpanProcessor):
    """A bounded queue of ended spans and the one thread that exports them in batches.

    `on_end` runs on the event loop and only appends (a deque append, no lock, no I/O); a full
    queue drops the span and counts it. Each counter has one writer (the loop, or the thread).
    """

    def __init__(self, exporter: SpanExporter, *, max_queue: int = 2048, batch: int = 512,
                 delay_s: float = 1.0) -> None:
        self.exporter = exporter
        self.max_queue, self.batch, self.delay_s = max_queue, batch, delay_s
        self.exported = 0
        self.failed = 0  # spans of batches the collector did not take (away, refusing, too slow)
        self.queue_full = 0
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._wake = threading.Event()
        self._flushed = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="warden-span-export", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self._closing:
            return
        if len(self._queue) >= self.max_queue:
            self.queue_full += 1
            return
        self._queue.append(span)
        if len(self._queue) >= self.batch:
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.delay_s)
            self._wake.clear()
            self._drain()
            self._flushed.set()
            if self._closing:
                return

    def _drain(self) -> None:
        while self._queue:
            spans = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
            try:
                ok = self.exporter.export(spans) is SpanExportResult.SUCCESS
            except Exception:
                log.exception("span export raised; %d spans lost", len(spans))
                ok = False
            if ok:
                self.exported += len(spans)
            else:
                self.failed += len(spans)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Blocks its caller (a thread, never the loop) until the queue was drained once more."""
        self._flushed.clear()
        self._wake.set()
        return self._flushed.wait(timeout_millis / 1000)

    def shutdown(self) -> None:
        self._closing = True
        self._wake.set()
        self._thread.join(5.0)  # an export retrying against an absent collector is cut by the exporter's shutdown
        self.exporter.shutdown()
        self._thread.join(1.0)


class SpanCounts(Collector):
    """The queue's outcomes at scrape time."""

    def __init__(self, queue: SpanQueue) -> None:
        self.queue = queue

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        exported = CounterMetricFamily("warden_trace_spans_exported", "Spans the OTLP collector accepted.")
        exported.add_metric([], self.queue.exported)
        dropped = CounterMetricFamily("warden_trace_spans_dropped", "Spans lost: the export queue was full, or the "
                                      "collector did not take their batch.", labels=["reason"])
        dropped.add_metric(["queue_full"], self.queue.queue_full)
        dropped.add_metric(["export_failed"], self.queue.failed)
        queued = GaugeMetricFamily("warden_trace_spans_queued", "Ended spans waiting for the exporting thread.")
        queued.add_metric([], self.queue.queued)
        yield from (exported, dropped, queued)


def build_provider(export: ExportPlan, version: str,
                   exporter: SpanExporter | None = None) -> tuple[TracerProvider, SpanQueue]:
    """A provider owned by its caller (never installed as OpenTelemetry's global one)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    resource = Resource.create({"service.name": export.service_name, "service.version": version})
    provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(export.sample_ratio)),
                              shutdown_on_exit=False)
    queue = SpanQueue(exporter or OTLPSpanExporter(endpoint=export.endpoint, headers=export.headers))
    provider.add_span_processor(queue)
    return provider, queue

