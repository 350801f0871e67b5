"""Log lines as text or as one JSON object each, carrying the request's id, tenant, model and trace id.

Log pipelines (Loki, Elasticsearch, Datadog) index fields, not prose: in `json` format every record
is an object with `ts`, `level`, `logger`, `message`, and, while a request is being handled, its
`request_id`, `tenant`, `model` and `trace_id`; an exception adds `exc_type`, `exc_message`,
`exc_stack`. The request is found through a context variable the middleware sets, so a log call
anywhere on the request path needs no extra argument. API keys and bodies are never fields: the
access line names the key by its public id only.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from detectors.runtime.logs import TEXT_FORMAT, JsonLines, LogFormat

__all__ = ["CURRENT", "TEXT_FORMAT", "JsonFormatter", "LogFormat", "access_logger", "configure"]


class Current(Protocol):
    """The request record (proxy/exchange.py) as log lines read it."""

    request_id: str
    tenant: str
    model: str | None
    api_key_id: str
    route: str
    backend: str | None
    started: float
    first_byte: float | None
    upstream_time: float
    streamed: bool
    status: int | None

    @property
    def trace(self) -> _Traced | None: ...

    @property
    def verdict(self) -> _Verdict: ...


class _Traced(Protocol):
    @property
    def trace_id(self) -> str | None: ...


class _Verdict(Protocol):
    action: str


# The request being handled in this task (the middleware sets and resets it): per task, not shared.
CURRENT: ContextVar[Current | None] = ContextVar("warden_current_request", default=None)


class JsonFormatter(JsonLines):
    """One JSON object per line (detectors/runtime/logs.py), with the request being handled."""

    def context(self) -> dict[str, Any]:
        current = CURRENT.get()
        if current is None:
            return {}
        out: dict[str, Any] = {"request_id": current.request_id, "tenant": current.tenant}
        if current.model:
            out["model"] = current.model
        trace_id = current.trace.trace_id if current.trace is not None else None
        if trace_id:
            out["trace_id"] = trace_id
        return out


class _WardenHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Warden's own root handler: the one `configure` replaces, leaving any other handler (a host
    application's, a test runner's) where it was."""


def configure(level: str, fmt: LogFormat) -> None:
    """The process's root handler, in one format (the CLI calls it again once the config is read)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _WardenHandler)]:
        root.removeHandler(old)
    handler = _WardenHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))


def access_logger(record_of: Callable[[BaseRequest], Current | None]) -> type[AbstractAccessLogger]:
    """aiohttp's access logger class, reading each request's record through `record_of`.

    aiohttp builds the logger itself (from a class), and the record's key belongs to the app's
    state, above this package: the key comes in as a function. One line per request on
    `warden.access`: fields in JSON, `key=value` pairs after the method and path in text.
    """

    class AccessLogger(AbstractAccessLogger):
        def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
            fields: dict[str, Any] = {"remote": request.remote, "method": request.method, "path": request.path,
                                      "status": response.status,
                                      "bytes": response.body_length, "duration_s": round(time, 6)}
            current = record_of(request)
            if current is not None:
                fields.update(exchange_fields(current))
            text = " ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, ""))
            self.logger.info("%s %s %s", request.method, request.path, text, extra={"fields": fields})

        @property
        def enabled(self) -> bool:
            return self.logger.isEnabledFor(logging.INFO)

    return AccessLogger


def exchange_fields(ex: Current) -> dict[str, Any]:
    ttft = round(ex.first_byte - ex.started, 6) if ex.streamed and ex.first_byte is not None else None
    trace_id = ex.trace.trace_id if ex.trace is not None else None
    return {"request_id": ex.request_id, "tenant": ex.tenant, "key_id": ex.api_key_id or None,
            "route": ex.route or None, "model": ex.model, "backend": ex.backend,
            "upstream_s": round(ex.upstream_time, 6) if ex.upstream_time else None, "ttft_s": ttft,
            "verdict": ex.verdict.action, "trace_id": trace_id}
