"""Every PromQL expression of every dashboard and rule returns data from a Prometheus that scraped a
real Warden under traffic; every ClickHouse panel's SQL returns rows from the telemetry it wrote."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.dashboards.conftest import Observed
from tests.dashboards.plots import draw
from tests.dashboards.queries import (
    Query,
    alerts,
    boards,
    clickhouse,
    fill_sql,
    instant,
    label_values,
    prometheus_api,
    promql,
)

BOARDS = boards()
PROMQL = [q for uid, b in BOARDS.items() for q in promql(uid, b)]
SQL = [q for uid, b in BOARDS.items() for q in clickhouse(uid, b)]
VARIABLES = [(uid, *v) for uid, b in BOARDS.items() for v in label_values(uid, b)]


def test_all_six_dashboards_have_queries() -> None:
    assert set(BOARDS) == {"warden-overview", "warden-upstreams", "warden-governance", "warden-drift",
                           "warden-review", "warden-scanner"}
    assert len(PROMQL) >= 60 and len(SQL) >= 10


def has_data(result: list[dict[str, Any]]) -> bool:
    """A series with a number: NaN alone (a quantile of a histogram nothing was observed in) is no data."""
    return any(math.isfinite(float(s["value"][1])) for s in result)


@pytest.mark.parametrize("query", PROMQL, ids=lambda q: f"{q.board}/{q.panel}/{q.text[:40]}")
def test_panel_promql_returns_data(observed: Observed, query: Query) -> None:
    assert has_data(instant(observed.prometheus, query.text, observed.at)), f"no data: {query.panel}: {query.text}"


@pytest.mark.parametrize(("alert", "query"), alerts(), ids=lambda v: str(v)[:40])
def test_alert_query_returns_data(observed: Observed, alert: str, query: str) -> None:
    assert has_data(instant(observed.prometheus, query, observed.at)), f"{alert} watches nothing: {query}"


def test_rules_load_and_evaluate_cleanly(observed: Observed) -> None:
    rules = [r for g in prometheus_api(observed.prometheus, "rules")["groups"] for r in g["rules"]]
    assert len(rules) == len(alerts())
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []


@pytest.mark.parametrize(("board", "variable", "metric", "label"), VARIABLES, ids=lambda v: str(v))
def test_variable_has_values(observed: Observed, board: str, variable: str, metric: str, label: str) -> None:
    values = prometheus_api(observed.prometheus, f"label/{label}/values", **{"match[]": metric})
    assert values, f"{board}: ${variable} would offer nothing"


@pytest.mark.parametrize("query", SQL, ids=lambda q: f"{q.board}/{q.panel}")
def test_clickhouse_panel_returns_rows(observed: Observed, query: Query) -> None:
    sql = fill_sql(query.text, int(observed.start) - 5, int(observed.at) + 5, observed.database)
    result = observed.chdb.query(sql)
    assert result.result_rows, f"no rows: {query.panel}: {sql}"
    if not query.table:
        assert result.column_names[0] == "time", "a time-series panel's first column must be `time`"


def test_a_misspelt_metric_fails(observed: Observed) -> None:
    """The check above can fail: a panel naming a metric Warden does not export gets no data."""
    assert instant(observed.prometheus, 'sum(rate(warden_request_total{model=~"$model"}[$__rate_interval]))',
                   observed.at) == []
    good = fill_sql("SELECT count() FROM requests WHERE $__timeFilter(ts)", 0, int(observed.at) + 5, observed.database)
    assert observed.chdb.query(good).result_rows[0][0] > 0
    with pytest.raises(Exception, match=r"UNKNOWN_TABLE|doesn't exist|does not exist"):
        observed.chdb.query(fill_sql("SELECT count() FROM requests_typo", 0, 1, observed.database))


@pytest.mark.parametrize("uid", sorted(BOARDS))
def test_draw_dashboard(observed: Observed, uid: str) -> None:
    """Grafana cannot run here: the same queries, drawn, for a person to look at."""
    path = draw(uid, BOARDS[uid], observed.prometheus, observed.chdb, observed.database, observed.start, observed.at)
    assert path.stat().st_size > 10_000
