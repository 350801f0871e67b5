"""The hot `requests` row: a tuple whose order must match the table's, or columns swap silently."""

from __future__ import annotations

from proxy.exchange import Exchange
from proxy.telemetry.events import REQUEST_COLUMNS, request_row
from proxy.telemetry.schema import TABLES


def test_request_columns_are_the_tables_columns_in_order() -> None:
    assert TABLES["requests"].column_names == REQUEST_COLUMNS


def test_request_row_puts_each_value_under_its_column() -> None:
    exchange = Exchange(request_id="r-1", started=0.0, model="m" * 200, tenant="acme", api_key_id="k1",
                        backend="http://b:1", streamed=True, upstream_time=0.25, status=200, model_version="m@fp",
                        prompt_tokens=3, completion_tokens=5)
    exchange.verdict.action, exchange.verdict.count = "flag", 2
    exchange.verdict.categories.update({"toxicity", "EMAIL"})
    headers = {"X-Prompt-Template-Id": "bot", "X-Prompt-Template-Version": "7"}
    row = dict(zip(REQUEST_COLUMNS, request_row(exchange, "/v1/chat/completions", 200, 0.5, 0.1, headers),
                   strict=True))
    assert row["ts"] > 1_700_000_000_000  # wall-clock milliseconds of the arrival
    row.pop("ts")
    assert row == {
        "request_id": "r-1", "client_request_id": "", "tenant": "acme", "api_key_id": "k1",
        "route": "/v1/chat/completions", "end_user": "", "cost": 0.0, "currency": "",  # migration 5: unpriced
        "model": "m" * 128, "backend": "http://b:1", "status": 200, "stream": True, "latency_ms": 500.0,
        "ttfb_ms": 100.0, "upstream_ms": 250.0, "prompt_tokens": 3, "completion_tokens": 5, "verdict": "flag",
        "detection_count": 2, "detection_categories": ("EMAIL", "toxicity"), "model_version": "m@fp",
        "prompt_template_id": "bot", "prompt_template_version": "7", "attrs": {},
    }


def test_a_request_without_answer_has_no_ttfb_and_defaults() -> None:
    row = dict(zip(REQUEST_COLUMNS, request_row(Exchange(request_id="r-2", started=0.0), "unmatched", 400, 0.001,
                                                None, {}), strict=True))
    assert (row["model"], row["backend"], row["stream"], row["ttfb_ms"], row["detection_categories"]) == \
        ("", "", False, None, ())
