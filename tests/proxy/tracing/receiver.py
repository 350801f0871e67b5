"""An OTLP/HTTP trace receiver, as a collector is one: POST /v1/traces, protobuf in, decoded with opentelemetry-proto.

No collector binary can be installed here (no otelcol, no Jaeger); this one speaks the same wire,
so the exporter, its encoding and its HTTP are the real ones.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as ProtoStatus

from tests.support.local_server import LocalServer


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs if isinstance(kv, KeyValue)}


@dataclass
class Received:
    """One span as the collector decoded it."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status: str
    resource: dict[str, Any] = field(default_factory=dict)


class OtlpReceiver(LocalServer):
    def __init__(self) -> None:
        self.spans: list[Received] = []
        self.requests = 0
        self.content_types: set[str] = set()
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self.app = app

    async def _traces(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.content_types.add(request.content_type)
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        for resource_spans in message.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(Received(
                        name=span.name, trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(), kind=ProtoSpan.SpanKind.Name(span.kind),
                        attributes=_attributes(span.attributes),
                        events=[(e.name, _attributes(e.attributes)) for e in span.events],
                        status=ProtoStatus.StatusCode.Name(span.status.code), resource=resource))
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    async def wait_for(self, trace_id: str, *names: str, timeout_s: float = 10.0) -> list[Received]:
        """The spans of one trace, once one of each name has arrived (the exporter sends about every second)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            spans = [s for s in self.spans if s.trace_id == trace_id]
            if set(names) <= {s.name for s in spans} or loop.time() > deadline:
                return spans
            await asyncio.sleep(0.05)
