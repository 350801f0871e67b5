"""Finding the rows of a refused batch that no store could take, so the rest of the batch still lands.

One request with a lone surrogate in a string (which UTF-8 cannot encode), or a value of the wrong
type from a buggy emitter, made the store refuse its whole batch: every other tenant's rows of that
second went to the spool, then to `rejected.spool`. The checks here run only after a refusal, on
the writer's I/O thread, and judge each value against its column's declared type, as the client
library would encode it.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from proxy.telemetry.schema import Table
from proxy.telemetry.spool import Entry

Check = Callable[[Any], bool]

_INT_BITS = {"8": 8, "16": 16, "32": 32, "64": 64}


def _text(value: Any) -> bool:
    if isinstance(value, bytes):
        return True
    if not isinstance(value, str):
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _args(inner: str) -> list[str]:
    """Top-level comma-separated arguments of a type: `LowCardinality(String), String` -> two."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(inner):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(inner[start:i].strip())
            start = i + 1
    parts.append(inner[start:].strip())
    return parts


@cache
def checker(type_name: str) -> Check:
    """A predicate for one ClickHouse type; unknown types accept anything (the store will judge)."""
    name, _, rest = type_name.partition("(")
    inner = rest[:-1] if rest.endswith(")") else ""
    if name in ("String", "FixedString"):
        return _text
    if name == "LowCardinality":
        return checker(inner)
    if name == "Nullable":
        base = checker(inner)
        return lambda v: v is None or base(v)
    if name == "Array":
        item = checker(inner)
        return lambda v: isinstance(v, list | tuple) and all(item(x) for x in v)
    if name == "Map":
        key_type, value_type = _args(inner)
        key, value = checker(key_type), checker(value_type)
        return lambda v: isinstance(v, dict) and all(key(k) and value(x) for k, x in v.items())
    if name == "Bool":
        return lambda v: isinstance(v, bool) or (isinstance(v, int) and v in (0, 1))
    if name.startswith(("UInt", "Int")) and name.lstrip("UInt") in _INT_BITS:
        bits = _INT_BITS[name.lstrip("UInt")]
        low, high = (0, 1 << bits) if name.startswith("U") else (-(1 << (bits - 1)), 1 << (bits - 1))
        return lambda v: isinstance(v, int) and low <= v < high
    if name.startswith("Float"):
        return lambda v: isinstance(v, int | float)
    if name.startswith(("DateTime", "Date")):
        return lambda v: isinstance(v, int | float | datetime.date)
    return lambda v: True


def split_bad(entry: Entry, table: Table) -> tuple[Entry, Entry]:
    """The entry's rows that every column accepts, and the ones some column would refuse.

    The good entry gets a token of its own (a derived id): it is a different batch from the one
    that may have been half-seen, and a replay of it must still deduplicate.
    """
    types = dict(zip(table.column_names, table.column_types, strict=True))
    checks = [checker(types[name]) for name in entry.names]
    bad_rows: set[int] = set()
    for check, values in zip(checks, entry.columns, strict=True):
        for i, value in enumerate(values):
            if i not in bad_rows and not check(value):
                bad_rows.add(i)
    good, bad = _take(entry.columns, bad_rows, keep=True), _take(entry.columns, bad_rows, keep=False)
    return (Entry(entry.id + "-good", entry.table, entry.names, good),
            Entry(entry.id + "-bad", entry.table, entry.names, bad))


def _take(columns: Sequence[Sequence[Any]], rows: set[int], *, keep: bool) -> list[list[Any]]:
    return [[v for i, v in enumerate(column) if (i in rows) != keep] for column in columns]
