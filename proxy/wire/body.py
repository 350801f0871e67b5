"""The request boundary for JSON bodies: what Warden accepts, decided once, before any component reads it.

Valid UTF-8, valid JSON, one object, no repeated keys (servers keep different copies of a repeated
key, so Warden would scan one value while the model reads another) and no lone surrogates (which no
store, socket or encoder downstream can carry). Every route that reads a body reads it through here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from proxy.errors import InvalidRequest

# A `\uD800`-`\uDFFF` escape in the raw body is the only way a lone surrogate gets into parsed JSON
# (UTF-8 cannot carry one); this finds one at C speed. Only then is the parsed body encoded again
# (as fast as parsing it) to tell lone halves from pairs (emoji sent as escapes), and only a lone
# one costs a walk of the body to name its place.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE = re.compile("[\ud800-\udfff]")


_SURROGATE = "lone surrogate"


class _DuplicateKey(Exception):
    pass


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """The parser's object hook: servers keep different copies of a repeated key (first or last), so
    Warden would scan one value while the model reads another; refusing is the only safe reading."""
    obj = dict(pairs)
    if len(obj) < len(pairs):
        raise _DuplicateKey
    return obj


class _Repeated(dict[str, Any]):
    repeated: str = ""


def _marking_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = _Repeated(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                obj.repeated = key
                break
            seen.add(key)
    return obj


def _json_path(path: tuple[str | int, ...]) -> str:
    """`messages[0].content`, with any lone surrogate in a key shown as U+FFFD (the error body is JSON)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else part
    return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in out)[:200] if _lone(out) else out[:200]


def _lone(text: str) -> bool:
    return not text.isascii() and _LONE.search(text) is not None


def _first(payload: Any, bad: Callable[[Any, tuple[str | int, ...]], str | None]) -> str | None:
    """The path of the first place, in document order, where `bad(value, path)` names a problem."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(payload, ())]
    while stack:
        value, path = stack.pop()
        problem = bad(value, path)
        if problem is not None:
            return _json_path(path if problem is _SURROGATE else (*path, problem))
        if isinstance(value, dict):
            stack.extend((value[k], (*path, k)) for k in reversed(value))
        elif isinstance(value, list):
            stack.extend((value[i], (*path, i)) for i in reversed(range(len(value))))
    return None


def _surrogate(value: Any, path: tuple[str | int, ...]) -> str | None:
    if isinstance(value, str) and _lone(value):
        return _SURROGATE
    return _SURROGATE if path and isinstance(path[-1], str) and _lone(path[-1]) else None


def _repeated(value: Any, path: tuple[str | int, ...]) -> str | None:
    return value.repeated or None if isinstance(value, _Repeated) else None


def parse_object(body: bytes) -> dict[str, Any]:
    """The request boundary for JSON: valid UTF-8, valid JSON, one object, no repeated keys, and no
    lone surrogates (`\\ud800`), which no store, socket or encoder downstream can carry."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"request body is not valid UTF-8 (byte {exc.start})", code="invalid_encoding") from None
    try:
        payload = json.loads(text, object_pairs_hook=_unique_object)
    except _DuplicateKey:
        repeated = _first(json.loads(text, object_pairs_hook=_marking_object), _repeated) or "?"
        raise InvalidRequest(f"request body repeats the key '{repeated}'; servers disagree on which copy counts",
                             param=repeated, code="duplicate_key") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                             code="invalid_json") from None
    except RecursionError:  # a small body can nest deeper than the parser's stack: a client error, not a 500
        raise InvalidRequest("request body is nested too deeply", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_json")
    if _SURROGATE_ESCAPE.search(body) is not None:
        try:
            json.dumps(payload, ensure_ascii=False, check_circular=False).encode()
        except UnicodeEncodeError:
            lone = _first(payload, _surrogate) or "?"
            raise InvalidRequest(f"request body holds invalid Unicode (a lone surrogate escape such as \\ud800) "
                                 f"at {lone}", param=lone, code="invalid_unicode") from None
    return payload


def body_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object whatever its Content-Type; None when it is not JSON at all.

    A model server reads JSON sent as text/plain (or UTF-16, or after a BOM) all the same, so Warden
    reads it too. A body that looks like JSON but is not an object raises: it cannot be judged.
    """
    try:
        encoding = json.detect_encoding(body)
        text = body.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None
    if not text.lstrip(" \t\r\n").startswith(("{", "[")):
        return None
    return parse_object(body if encoding == "utf-8" else text.encode("utf-8"))
