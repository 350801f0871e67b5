"""Review items and their labels as JSONL (lossless) and CSV (one row per item, for spreadsheets).

Both carry each item's stratum and inclusion probability, so anyone can redo the estimates.
CSV cells that a spreadsheet would run as a formula (=, +, -, @ first) are prefixed with a quote:
model output is attacker-chosen text.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

CSV_COLUMNS = ("id", "created", "request_id", "tenant", "model", "route", "backend", "model_version", "stratum",
               "probability", "verdict", "outcome", "labels", "categories", "comments", "detectors", "template_id",
               "template_version", "prompt", "output")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def jsonl(rows: list[dict[str, Any]]) -> tuple[str, str]:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), "application/x-ndjson"


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_text(rows: list[dict[str, Any]]) -> tuple[str, str]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        labels = row["labels"]
        flat = {
            **row,
            "labels": ";".join(f"{lab['reviewer']}:{lab['label']}" for lab in labels),
            "categories": ";".join(sorted({c for lab in labels for c in lab["categories"]})),
            "comments": " | ".join(lab["comment"] for lab in labels if lab["comment"]),
            "detectors": ";".join(sorted({f["detector"] for f in row["findings"]})),
        }
        writer.writerow([_cell(flat[c]) for c in CSV_COLUMNS])
    return out.getvalue(), "text/csv"
