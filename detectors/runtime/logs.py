"""Log lines as text or as one JSON object each: the format every Warden process writes in.

The scanner is one of the processes behind `warden serve`, writing to the same stream as the proxy,
so under `server.log_format: json` a text line from it would break the pipeline's parsing. The
proxy's formatter (proxy/tracing/logs.py) extends this one with the request's fields.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Literal

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLines(logging.Formatter):
    """One JSON object per line: `ts`, `level`, `logger`, `message`, what `context()` adds, the fields of
    `extra={"fields": {...}}`, and `exc_type`, `exc_message`, `exc_stack` for an exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(self.context())
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            out["exc_type"] = type(exc).__name__
            out["exc_message"] = str(exc)
            out["exc_stack"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)

    def context(self) -> dict[str, Any]:
        """Fields of whatever this process is doing when the line is written (none here)."""
        return {}


def formatter(fmt: LogFormat) -> logging.Formatter:
    return JsonLines() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
