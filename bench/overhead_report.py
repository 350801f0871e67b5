"""Turning one run's measurements into the markdown table, the PASS/FAIL checks and the JSON.

Added latency is the difference of percentiles (target p50 minus direct p50 at the same
offered rate), not a percentile of per-request differences: the two runs are separate samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Result = dict[str, Any]


def _num(result: Result | None, *path: str) -> float | None:
    value = _get(result, *path)
    return float(value) if isinstance(value, (int, float)) else None


def _get(result: Result | None, *path: str) -> Any:
    node: Any = result
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _fmt(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def latency_at(result: Result | None, rate: int, q: str, slot: str = "open_loop") -> float | None:
    return _num(result, slot, str(rate), "latency_ms", q)


def notes(result: Result, key: str = "") -> str:
    """Anything that makes a row's numbers suspect: errors, drops, an open loop it could not keep up with."""
    out = []
    if result.get("error") and not result.get("wrk"):
        return "NOT RUN: " + str(result["error"]).splitlines()[0][:120]
    if result.get("error"):
        out.append("FAILED: " + str(result["error"]).splitlines()[0][:120])
    wrk = result.get("wrk") or {}
    if wrk.get("non_2xx") or wrk.get("socket_errors"):
        out.append(f"wrk: {wrk.get('non_2xx', 0)} non-2xx, {wrk.get('socket_errors', 0)} socket errors")
    cores, steal, other = wrk.get("proxy_cores"), wrk.get("steal_pct") or 0, wrk.get("other_pct") or 0
    single = len(str(result.get("cpus", "1")).split(",")) == 1
    if key != "direct" and single and (steal >= 5 or other >= 10):
        out.append(f"noisy: other processes took {other:.0f}% and the hypervisor {steal:.0f}% of the proxy CPU")
    elif key != "direct" and single and cores is not None and cores < 0.85:
        out.append("proxy not CPU-bound under wrk: the load side limits it, so max req/s is a lower bound")
    for rate, run in (result.get("open_loop") or {}).items():
        if run.get("skipped"):
            out.append(f"@{rate}/s not run: {run['skipped']}")
            continue
        bad = (run.get("failed") or 0) + (run.get("dropped") or 0)
        p99 = _get(run, "latency_ms", "p99")
        if bad or (p99 is not None and p99 > 1000):
            out.append(f"@{rate}/s: {bad} failed/dropped, p99 {_fmt(p99, 0)} ms (over capacity)")
    if _get(result, "ttfb", "errors"):
        out.append(f"ttfb: {result['ttfb']['errors']} errors")
    return "; ".join(out)


def table(results: dict[str, Result], labels: dict[str, str], rates: list[int]) -> str:
    """One markdown row per target; latencies in ms, `+` columns are over `direct` in this run."""
    direct = results.get("direct")
    head = ["target", "CPUs", "max req/s", "req/s per CPU-s", "proxy CPU (cores)"]
    for rate in rates:
        head += [f"@{rate}/s p50 / p99", f"added @{rate}/s p50 / p99"]
    head += ["TTFB p50", "added TTFB", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for key, result in results.items():
        wrk = result.get("wrk") or {}
        row = [labels.get(key, key), result.get("cpus", ""), _fmt(wrk.get("rps"), 0),
               _fmt(wrk.get("rps_per_cpu_s"), 0), _fmt(wrk.get("proxy_cores"), 2)]
        for rate in rates:
            p50, p99 = latency_at(result, rate, "p50"), latency_at(result, rate, "p99")
            row.append(f"{_fmt(p50)} / {_fmt(p99)}")
            if key == "direct":
                row.append("(baseline)")
            else:
                added50 = _diff(p50, latency_at(direct, rate, "p50"))
                added99 = _diff(p99, latency_at(direct, rate, "p99"))
                row.append(f"{_fmt(added50, signed=True)} / {_fmt(added99, signed=True)}")
        ttfb = _get(result, "ttfb", "ttfb_ms", "p50")
        row.append(_fmt(ttfb, 3))
        row.append("(baseline)" if key == "direct"
                   else _fmt(_diff(ttfb, _get(direct, "ttfb", "ttfb_ms", "p50")), 3, signed=True))
        row.append(notes(result, key))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


@dataclass
class Check:
    name: str
    value: float | None
    op: str  # ">=" or "<="
    limit: float
    unit: str
    target: bool = True  # False: shown for context, never PASS/FAIL

    @property
    def verdict(self) -> str:
        if not self.target:
            return "info"
        if self.value is None:
            return "N/A"
        ok = self.value >= self.limit if self.op == ">=" else self.value <= self.limit
        return "PASS" if ok else "FAIL"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "op": self.op, "limit": self.limit, "unit": self.unit,
                "target": self.target, "verdict": self.verdict}


def checks(results: dict[str, Result]) -> list[Check]:
    """The brief's targets, then context ratios; a missing measurement gives N/A, never PASS."""
    def rps(key: str) -> float | None:
        return _num(results.get(key), "wrk", "rps")

    def per_cpu(key: str) -> float | None:
        return _num(results.get(key), "wrk", "rps_per_cpu_s")

    warden, direct = results.get("warden"), results.get("direct")

    def awake_added(key: str, q: str) -> float | None:
        """Added latency with the proxy's vCPU kept from halting (`--awake 200`); None when not run."""
        return _diff(latency_at(results.get(key), 200, q, "open_loop_awake"),
                     latency_at(direct, 200, q, "open_loop_awake"))

    ttfb = _diff(_get(warden, "ttfb", "ttfb_ms", "p50"), _get(direct, "ttfb", "ttfb_ms", "p50"))
    return [
        Check("Warden / minimal relay throughput (both uvloop)", _ratio(rps("warden"), rps("relay")), ">=", 0.75, "x"),
        Check("Warden / LiteLLM throughput", _ratio(rps("warden"), rps("litellm")), ">=", 25, "x"),
        Check("Warden added p50 latency @200 req/s",
              _diff(latency_at(warden, 200, "p50"), latency_at(direct, 200, "p50")), "<=", 1.0, "ms"),
        Check("Warden added p99 latency @200 req/s",
              _diff(latency_at(warden, 200, "p99"), latency_at(direct, 200, "p99")), "<=", 3.0, "ms"),
        Check("Warden streaming TTFB over direct (p50, concurrency 1)", ttfb, "<=", 1.0, "ms"),
        Check("Warden with telemetry off / minimal relay throughput (both uvloop)",
              _ratio(rps("warden-notel"), rps("relay")), ">=", 0.75, "x", target=False),
        Check("Warden with telemetry off / LiteLLM throughput",
              _ratio(rps("warden-notel"), rps("litellm")), ">=", 25, "x", target=False),
        Check("Warden / minimal relay throughput (both asyncio loop)",
              _ratio(rps("warden-noloop"), rps("relay-noloop")), ">=", 0.75, "x", target=False),
        Check("Warden uvloop on / off throughput", _ratio(rps("warden"), rps("warden-noloop")), ">=", 1, "x",
              target=False),
        Check("Warden 2 procs (reuse-port) / 1 proc throughput", _ratio(rps("warden-x2"), rps("warden")), ">=", 1,
              "x", target=False),
        # The same floor with Warden's own client: what Warden's features cost, the client's gain set aside.
        Check("Warden / minimal relay on Warden's client throughput", _ratio(rps("warden"), rps("relay-lean")), ">=",
              0.75, "x", target=False),
        Check("Warden / minimal relay req/s per CPU-second", _ratio(per_cpu("warden"), per_cpu("relay")), ">=", 0.75,
              "x", target=False),
        Check("Warden added p50 latency @200 req/s, proxy CPU kept awake", awake_added("warden", "p50"), "<=", 1.0,
              "ms", target=False),
        Check("Warden added p99 latency @200 req/s, proxy CPU kept awake", awake_added("warden", "p99"), "<=", 3.0,
              "ms", target=False),
        Check("Minimal relay added p50 @200 req/s, proxy CPU kept awake", awake_added("relay", "p50"), "<=", 1.0, "ms",
              target=False),
        Check("Relay on Warden's client added p50 @200 req/s, proxy CPU kept awake", awake_added("relay-lean", "p50"),
              "<=", 1.0, "ms", target=False),
        Check("nginx / Warden throughput", _ratio(rps("nginx"), rps("warden")), ">=", 1, "x", target=False),
        Check("direct / Warden throughput (upstream headroom)", _ratio(rps("direct"), rps("warden")), ">=", 3, "x",
              target=False),
    ]


def checks_markdown(items: list[Check]) -> str:
    lines = ["| check | value | target | verdict |", "|---|---|---|---|"]
    for c in items:
        value = "–" if c.value is None else f"{c.value:.2f} {c.unit}"
        goal = f"{c.op} {c.limit:g} {c.unit}" if c.target else "(context)"
        lines.append(f"| {c.name} | {value} | {goal} | {c.verdict} |")
    return "\n".join(lines)
