"""Small builders for Grafana dashboard JSON (schemaVersion 42), so six dashboards stay consistent.

Every Prometheus panel filters on the dashboard's variables with `=~`, and every variable has
`.*` as its "All" value: the tests evaluate each expression with the variables set to `.*`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROM = {"type": "prometheus", "uid": "warden-prometheus"}
CLICKHOUSE = {"type": "grafana-clickhouse-datasource", "uid": "warden-clickhouse"}
SQL_DIR = Path(__file__).parent / "sql"
SCHEMA_VERSION = 42
Json = dict[str, Any]


def prom(expr: str, legend: str = "") -> Json:
    return {"datasource": PROM, "expr": expr, "legendFormat": legend or "__auto", "range": True}


def sql(name: str, table: bool = False) -> Json:
    """A ClickHouse query read from dashboards/sql/<name>.sql (Grafana plugin macros inside)."""
    raw = (SQL_DIR / f"{name}.sql").read_text().strip()
    return {"datasource": CLICKHOUSE, "editorType": "sql", "format": 1 if table else 0,
            "queryType": "table" if table else "timeseries", "rawSql": raw, "pluginVersion": "4.10.1"}


def quantiles(metric: str, by: str = "", selector: str = "", qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> list[Json]:
    """histogram_quantile per q over `<metric>_bucket`, summed by `le` plus `by`."""
    group = f"{by}, le" if by else "le"
    legend = f"p{{q}} {{{{{by}}}}}" if by else "p{q}"
    return [prom(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{selector}[$__rate_interval])))",
                 legend.format(q=round(q * 100))) for q in qs]


def variable(name: str, query: str, datasource: Json = PROM, label: str = "") -> Json:
    """A multi-value variable whose "All" is the regex `.*` (panels match it with `=~`)."""
    return {"name": name, "label": label or name.capitalize(), "type": "query", "datasource": datasource,
            "query": query, "refresh": 2, "includeAll": True, "multi": True,
            "allValue": ".*", "current": {"text": "All", "value": "$__all"}, "sort": 1, "options": []}


@dataclass
class Board:
    uid: str
    title: str
    description: str
    tags: list[str] = field(default_factory=lambda: ["warden"])
    variables: list[Json] = field(default_factory=list)
    panels: list[Json] = field(default_factory=list)
    _x: int = 0
    _y: int = 0
    _row_h: int = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append({"type": "row", "title": title, "id": len(self.panels) + 1, "collapsed": False,
                            "panels": [], "gridPos": {"x": 0, "y": self._y, "w": 24, "h": 1}})
        self._y += 1

    def _newline(self) -> None:
        if self._x:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0

    def panel(self, kind: str, title: str, targets: list[Json], *, unit: str = "short", w: int = 8, h: int = 8,
              description: str = "", options: Json | None = None, custom: Json | None = None) -> None:
        if self._x + w > 24:
            self._newline()
        refs = "ABCDEFGHIJ"
        datasource = targets[0]["datasource"]
        defaults: Json = {"unit": unit, "custom": custom or {},
                          "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]}}
        self.panels.append({
            "type": kind, "title": title, "description": description, "id": len(self.panels) + 1,
            "datasource": datasource, "gridPos": {"x": self._x, "y": self._y, "w": w, "h": h},
            "targets": [{**t, "refId": refs[i]} for i, t in enumerate(targets)],
            "fieldConfig": {"defaults": defaults, "overrides": []}, "options": options or {},
        })
        self._x += w
        self._row_h = max(self._row_h, h)

    def timeseries(self, title: str, targets: list[Json], **kw: Any) -> None:
        kw.setdefault("custom", {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never"})
        kw.setdefault("options", {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                                  "tooltip": {"mode": "multi", "sort": "desc"}})
        self.panel("timeseries", title, targets, **kw)

    def stat(self, title: str, targets: list[Json], **kw: Any) -> None:
        kw.setdefault("w", 4)
        kw.setdefault("h", 4)
        kw.setdefault("options", {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                                  "colorMode": "value", "graphMode": "area"})
        self.panel("stat", title, targets, **kw)

    def table(self, title: str, targets: list[Json], **kw: Any) -> None:
        kw.setdefault("w", 24)
        kw.setdefault("options", {"showHeader": True, "cellHeight": "sm"})
        self.panel("table", title, targets, **kw)

    def json(self) -> Json:
        return {
            "uid": self.uid, "title": self.title, "description": self.description, "tags": self.tags,
            "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": True, "graphTooltip": 1,
            "time": {"from": "now-6h", "to": "now"}, "refresh": "30s", "timezone": "browser",
            "fiscalYearStartMonth": 0, "liveNow": False, "links": [
                {"title": "Warden", "type": "dashboards", "tags": ["warden"], "asDropdown": True,
                 "icon": "external link", "includeVars": True, "keepTime": True, "targetBlank": False, "tooltip": ""}],
            "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                      "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                      "name": "Annotations & Alerts", "type": "dashboard"}]},
            "templating": {"list": self.variables},
            "panels": self.panels,
        }
