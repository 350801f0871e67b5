"""Where spans go (config first, then the standard variables) and the export queue's counted losses."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from proxy.tracing.export import ExportPlan, build_provider, plan
from proxy.tracing.settings import OtelSettings


def test_plan_reads_config_then_the_standard_variables() -> None:
    assert plan(OtelSettings(), {}) is None
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/", "OTEL_SERVICE_NAME": "edge",
           "OTEL_TRACES_SAMPLER_ARG": "0.25"}
    assert plan(OtelSettings(), env) == ExportPlan("http://collector:4318/v1/traces", 0.25, "edge")
    traces = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://x.example/otel/v1/traces"}
    assert plan(OtelSettings(), traces) == ExportPlan("https://x.example/otel/v1/traces", 1.0, "warden")
    mine = OtelSettings(endpoint="https://cloud.langfuse.com/api/public/otel", sample_ratio=0.5, service_name="gw",
                        headers={"Authorization": "Basic c2VjcmV0"})
    got = plan(mine, env)
    assert got is not None and got.endpoint == "https://cloud.langfuse.com/api/public/otel/v1/traces"
    assert (got.sample_ratio, got.service_name, got.headers) == (0.5, "gw", {"Authorization": "Basic c2VjcmV0"})
    assert "c2VjcmV0" not in repr(mine) and "c2VjcmV0" not in repr(got)  # the key stays out of reprs
    assert plan(mine, {"OTEL_SDK_DISABLED": "true"}) is None
    assert plan(mine, {"OTEL_TRACES_EXPORTER": "none"}) is None
    shown = ExportPlan("https://user:pw@host:4318/v1/traces?token=t", 1.0, "w").shown
    assert shown == "https://host:4318/v1/traces"


class Stuck(SpanExporter):
    """A collector that takes nothing until released: the queue fills behind it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.batches: list[int] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(5)
        self.batches.append(len(spans))
        return SpanExportResult.FAILURE if len(self.batches) == 1 else SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


def test_a_full_queue_drops_and_counts_and_failed_batches_are_counted() -> None:
    exporter = Stuck()
    provider, queue = build_provider(ExportPlan("http://127.0.0.1:9/v1/traces", 1.0, "t"), "0", exporter)
    queue.batch, queue.max_queue = 1, 3
    tracer = provider.get_tracer("t")
    tracer.start_span("first").end()
    queue._wake.set()
    for _ in range(200):  # the thread has taken the first span and is stuck exporting it
        if queue.queued == 0:
            break
        threading.Event().wait(0.01)
    for i in range(5):
        tracer.start_span(f"s{i}").end()
    assert (queue.queued, queue.queue_full) == (3, 2)
    exporter.release.set()
    assert queue.force_flush(5000)
    assert (queue.failed, queue.exported, queue.queued) == (1, 3, 0)
    provider.shutdown()
