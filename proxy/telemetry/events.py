"""Rows the proxy emits, built from what it already has; nothing here does I/O."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from proxy.relay import Exchange
from proxy.upstream import Backend

# Sent by clients that version their prompts; stored as lineage on the request's row.
PROMPT_TEMPLATE_ID = "X-Prompt-Template-Id"
PROMPT_TEMPLATE_VERSION = "X-Prompt-Template-Version"
MAX_LABEL = 128  # client-chosen strings are cut, so one client cannot bloat LowCardinality columns


def request_row(
    exchange: Exchange, route: str, status: int, total_s: float, ttfb_s: float | None, headers: Mapping[str, str]
) -> dict[str, Any]:
    """One `requests` row; `ts` is when the request arrived (wall clock), in milliseconds."""
    return {
        "ts": int((time.time() - total_s) * 1000),
        "request_id": exchange.request_id,
        "tenant": exchange.tenant,
        "api_key_id": exchange.api_key_id,
        "route": route,
        "model": (exchange.model or "")[:MAX_LABEL],
        "backend": exchange.backend or "",
        "status": status,
        "latency_ms": total_s * 1000.0,
        "ttfb_ms": None if ttfb_s is None else ttfb_s * 1000.0,
        "upstream_ms": exchange.upstream_time * 1000.0,
        "model_version": exchange.model_version[:MAX_LABEL],
        "prompt_tokens": exchange.prompt_tokens,
        "completion_tokens": exchange.completion_tokens,
        "verdict": exchange.verdict.action,
        "detection_count": exchange.verdict.count,
        "detection_categories": sorted(exchange.verdict.categories),
        "prompt_template_id": headers.get(PROMPT_TEMPLATE_ID, "")[:MAX_LABEL],
        "prompt_template_version": headers.get(PROMPT_TEMPLATE_VERSION, "")[:MAX_LABEL],
    }


def health_listener(emit: Callable[[str, dict[str, Any]], None]) -> Callable[[Backend, str, str], None]:
    """Every backend state change (healthy, unhealthy, ejected) as a `backend_health` row."""

    def listen(backend: Backend, previous: str, reason: str) -> None:
        emit("backend_health", {"upstream_group": backend.group, "backend": backend.url, "state": backend.state,
                                "previous_state": previous, "reason": reason[:500]})

    return listen
