"""`warden spend` and `GET /admin/spend`: what was spent, grouped, over a recent span, from the `requests` rows.

Both build the same one read-only statement here and run it where `warden query` runs its SQL,
so the shell and the admin API cannot disagree. Rows whose model had no price cost 0 and are
counted apart (`unpriced`), never hidden.
"""

from __future__ import annotations

import re

BY = {"tenant": "tenant", "key": "api_key_id", "user": "end_user", "model": "model"}
_SPAN = re.compile(r"^(\d{1,6})([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str) -> int:
    """`30m`, `24h`, `7d`, `2w` as seconds; ValueError names the form."""
    match = _SPAN.match(text.strip())
    if match is None:
        raise ValueError(f"since: {text!r} is not a span such as 30m, 24h, 7d or 2w")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def spend_sql(by: str, since_s: int, table: str = "requests") -> str:
    """Spend per `by` (tenant, key, user, model) and currency over the last `since_s` seconds, largest first."""
    if by not in BY:
        raise ValueError(f"by: one of {', '.join(BY)}, not {by!r}")
    column = BY[by]
    # the aliases differ from the columns: ClickHouse resolves an alias inside the other aggregates too
    return (f"SELECT {column} AS {by}, currency, round(sum(cost), 6) AS spent, count() AS requests, "
            f"countIf(cost = 0) AS unpriced, sum(prompt_tokens) AS input_tokens, "
            f"sum(completion_tokens) AS output_tokens "
            f"FROM {table} WHERE ts >= now64(3) - INTERVAL {int(since_s)} SECOND "
            f"GROUP BY {by}, currency ORDER BY spent DESC, {by}")
