"""Every query the dashboards and rules hold, made runnable the way Grafana would run it.

Grafana fills in variables and macros before a query leaves it; here the variables are set to
the "All" value every dashboard variable uses (`.*`), `$__rate_interval` to a window the test's
1 s scrapes fill, and the ClickHouse plugin's macros to the SQL the plugin generates.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
RULES = DASHBOARDS / "alerts" / "warden-rules.yaml"
TABLES = ("requests", "detections", "drift_windows", "drift_samples", "review_samples", "review_labels",
          "backend_health", "audit_actions")
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(?!__)(\w+)")
_ALERT = re.compile(r"^(?P<query>.+?)\s*(?:>|<|>=|<=|==|!=)\s*[-+0-9.e]+\s*$", re.S)


@dataclass(frozen=True)
class Query:
    board: str
    panel: str
    text: str
    table: bool = False  # SQL: a table panel (no time column)


def boards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("warden-*.json"))}


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def promql(board_id: str, board: dict[str, Any]) -> list[Query]:
    return [Query(board_id, p["title"], t["expr"]) for p in _panels(board) for t in p["targets"]
            if t["datasource"]["type"] == "prometheus"]


def clickhouse(board_id: str, board: dict[str, Any]) -> list[Query]:
    found = [Query(board_id, p["title"], t["rawSql"], t["format"] == 1) for p in _panels(board) for t in p["targets"]
             if t["datasource"]["type"] == "grafana-clickhouse-datasource"]
    found += [Query(board_id, f"variable {v['name']}", v["query"], True) for v in board["templating"]["list"]
              if v["datasource"]["type"] == "grafana-clickhouse-datasource"]
    return found


def label_values(board_id: str, board: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(variable, metric, label) of each Prometheus `label_values(metric, label)` variable."""
    found = []
    for v in board["templating"]["list"]:
        if v["datasource"]["type"] == "prometheus":
            match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", v["query"])
            assert match, f"{board_id}: variable {v['name']} is not label_values(metric, label): {v['query']}"
            found.append((v["name"], match.group(1), match.group(2)))
    return found


def alerts() -> list[tuple[str, str]]:
    """(alert, query) with the threshold comparison cut off: the query must have data, firing or not."""
    found = []
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            match = _ALERT.match(rule["expr"].strip())
            assert match, f"{rule['alert']}: expr must be `<query> <op> <number>`, got {rule['expr']!r}"
            found.append((rule["alert"], match.group("query")))
    return found


def fill_promql(expr: str) -> str:
    expr = expr.replace("$__rate_interval", "30s").replace("$__interval", "5s").replace("$__range", "1m")
    return _VARIABLE.sub(".*", expr)


def fill_sql(sql: str, start: int, end: int, database: str, step_s: int = 1) -> str:
    """The grafana-clickhouse-datasource macros, expanded as the plugin does; tables in the test's database."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 >= toDateTime({start}) AND \1 <= toDateTime({end})", sql)
    sql = re.sub(r"\$__timeInterval\((\w+)\)", rf"toStartOfInterval(toDateTime(\1), INTERVAL {step_s} second)", sql)
    sql = sql.replace("$__interval_s", str(step_s))
    sql = _VARIABLE.sub(".*", sql)
    assert not re.search(r"\$(?:__|\{|[A-Za-z])", sql), f"an unexpanded macro or variable is left: {sql}"
    tables = "|".join(TABLES)
    return re.sub(rf"\b(FROM|JOIN)\s+({tables})\b", rf"\1 `{database}`.\2", sql)


def prometheus_api(base: str, path: str, **params: Any) -> Any:
    url = f"{base}/api/v1/{path}?{urllib.parse.urlencode(params, doseq=True)}"
    with urllib.request.urlopen(url, timeout=10) as resp:  # 127.0.0.1 only
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]


def instant(base: str, expr: str, at: float) -> list[dict[str, Any]]:
    data = prometheus_api(base, "query", query=fill_promql(expr), time=at)
    return list(data["result"])


def series_range(base: str, expr: str, start: float, end: float, step_s: float = 1) -> list[dict[str, Any]]:
    data = prometheus_api(base, "query_range", query=fill_promql(expr), start=start, end=end, step=step_s)
    return list(data["result"])
