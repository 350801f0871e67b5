"""PNG pictures of each dashboard's queries over the test's traffic: Grafana cannot run here, so
these let a person look at what the panels would show (written to .artifacts/dashboards/)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tests.dashboards.queries import ROOT, fill_sql, series_range

ARTIFACTS = ROOT / ".artifacts" / "dashboards"


def draw(uid: str, board: dict[str, Any], prometheus: str, chdb: Any, database: str, start: float,
         end: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in board["panels"] if p["type"] != "row"]
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 6, rows * 3.2), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        ax.set_title(panel["title"], fontsize=9)
        ax.tick_params(labelsize=7)
        for target in panel["targets"]:
            if target["datasource"]["type"] == "prometheus":
                for s in series_range(prometheus, target["expr"], start, end):
                    xs = [float(t) - start for t, _ in s["values"]]
                    ys = [float(v) for _, v in s["values"]]
                    ax.plot(xs, ys, linewidth=1, label=_legend(target["legendFormat"], s["metric"]))
            else:
                result = chdb.query(fill_sql(target["rawSql"], int(start) - 5, int(end) + 5, database))
                _sql_panel(ax, result.column_names, result.result_rows, start, table=target["format"] == 1)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="upper left")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"{board['title']} (test traffic; x: seconds since start)")
    fig.tight_layout()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{uid}.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _legend(template: str, labels: dict[str, str]) -> str:
    text = template if template != "__auto" else str(labels)
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", value)
    return text[:40]


def _sql_panel(ax: Any, columns: list[str], rows: list[tuple[Any, ...]], start: float, table: bool) -> None:
    if not table:  # long format: time, [series], value columns
        series: dict[str, tuple[list[float], list[float]]] = {}
        labelled = len(columns) > 2 and isinstance(rows[0][1], str) if rows else False
        for row in rows:
            t = row[0].timestamp() - start
            values = row[2:] if labelled else row[1:]
            names = columns[2:] if labelled else columns[1:]
            for name, value in zip(names, values, strict=True):
                key = f"{row[1]} {name}" if labelled else name
                xs, ys = series.setdefault(key, ([], []))
                xs.append(t)
                ys.append(float(value))
        for key, (xs, ys) in series.items():
            ax.plot(xs, ys, marker="o", markersize=2, linewidth=1, label=key[:40])
        return
    ax.axis("off")
    cells = [[str(v)[:16] for v in row] for row in rows[:12]]
    if cells:
        grid = ax.table(cellText=cells, colLabels=[c[:14] for c in columns], loc="center")
        grid.set_fontsize(6)
