"""What one `requests` row costs the proxy's process, thread by thread, at a steady rate.

    .venv/bin/python -m bench.telemetry_rows [--rate 4000] [--seconds 8] [--rounds 3] [--json out.json]

A TelemetryWriter on the embedded engine (chDB, default settings) is fed `--rate` rows a second
from its event loop, 100 ticks a second, as the proxy's middleware feeds it. Three forms, each
in a fresh process per round, rounds interleaved so that a noisy minute hits all of them:

- `floor`: the same ticking loop emitting nothing (what the harness itself costs);
- `dict`: the row built as a 19-key dict, the form every `requests` row had before;
- `tuple`: `proxy.telemetry.events.request_row`, the tuple in column order the proxy emits now.

Per form: process CPU per row above the floor (the median round), and where it went: the loop
thread, the writer's Python threads (rows to columns; clickhouse-connect's Native encoding and
the insert call), and the engine's own threads (merges, cleanup). Thread CPU is read from
/proc at clock-tick (10 ms) resolution, so runs of several seconds are needed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from bench.harness import bench_command, child_json, interleaved
from proxy.exchange import Exchange
from proxy.telemetry import TelemetryWriter
from proxy.telemetry.events import request_row
from proxy.telemetry.settings import TelemetrySettings

FORMS = ("floor", "dict", "tuple")
HEADERS: dict[str, str] = {}


def dict_row(exchange: Exchange, route: str, status: int, total_s: float, ttfb_s: float | None) -> dict[str, Any]:
    """The row as the proxy built it before (commit 0fff486 replaced it): the baseline."""
    return {
        "ts": int((time.time() - total_s) * 1000), "request_id": exchange.request_id, "tenant": exchange.tenant,
        "api_key_id": exchange.api_key_id, "route": route, "model": (exchange.model or "")[:128],
        "backend": exchange.backend or "", "status": status, "latency_ms": total_s * 1000.0,
        "ttfb_ms": None if ttfb_s is None else ttfb_s * 1000.0, "upstream_ms": exchange.upstream_time * 1000.0,
        "model_version": exchange.model_version[:128], "prompt_tokens": exchange.prompt_tokens,
        "completion_tokens": exchange.completion_tokens, "verdict": exchange.verdict.action,
        "detection_count": exchange.verdict.count, "detection_categories": sorted(exchange.verdict.categories),
        "prompt_template_id": HEADERS.get("X-Prompt-Template-Id", "")[:128],
        "prompt_template_version": HEADERS.get("X-Prompt-Template-Version", "")[:128],
    }


def thread_cpu() -> dict[str, float]:
    """CPU seconds per group: the loop thread, the writer's Python threads, the engine's threads."""
    tick = os.sysconf("SC_CLK_TCK")
    groups = {"loop": 0.0, "writer": 0.0, "engine": 0.0}
    for tid in os.listdir("/proc/self/task"):
        try:
            name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended between listing and reading
            continue
        used = (int(fields[11]) + int(fields[12])) / tick
        group = "loop" if int(tid) == os.getpid() else "writer" if name == "python" else "engine"
        groups[group] += used
    return groups


async def child(form: str, rate: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        writer = TelemetryWriter(TelemetrySettings(dsn=f"chdb://{tmp}/chdb", spool_dir=f"{tmp}/spool"),
                                 CollectorRegistry())
        await writer.start()
        exchange = Exchange(request_id="0123456789abcdef", started=time.monotonic(), model="bench-model",
                            backend="http://127.0.0.1:9000")
        make: Callable[[], Any] | None = {
            "floor": None,
            "dict": lambda: dict_row(exchange, "/v1/chat/completions", 200, 0.0012, 0.0009),
            "tuple": lambda: request_row(exchange, "/v1/chat/completions", 200, 0.0012, 0.0009, HEADERS),
        }[form]
        await asyncio.sleep(1.0)  # the engine's start-up work settles
        gc.collect()
        gc.freeze()
        gc.set_threshold(5000, 20, 10)  # as `warden serve` runs
        per_tick, rows = rate // 100, 0
        before, cpu, start = thread_cpu(), time.process_time(), time.perf_counter()
        while time.perf_counter() - start < seconds:
            if make is not None:
                for _ in range(per_tick):
                    writer.emit("requests", make())
            rows += per_tick
            await asyncio.sleep(0.01)
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu
        after = thread_cpu()
        await writer.stop()
    return {"form": form, "rows": rows, "wall_s": wall, "cpu_s": cpu,
            "threads_s": {k: after[k] - before[k] for k in after}}


def run_child(form: str, args: argparse.Namespace) -> dict[str, Any]:
    return child_json(bench_command("telemetry_rows", "--child", form, "--rate", str(args.rate),
                                    "--seconds", str(args.seconds)), form)


def report(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Median per row over rounds, the floor's median subtracted (its rows are ticks, not emits)."""
    def per_row(result: dict[str, Any], key: str | None = None) -> float:
        used = result["cpu_s"] if key is None else result["threads_s"][key]
        return float(used / result["rows"] * 1e6)

    floor = {k: statistics.median(per_row(r, k) for r in rounds["floor"]) for k in ("loop", "writer", "engine")}
    floor_all = statistics.median(per_row(r) for r in rounds["floor"])
    out: dict[str, Any] = {}
    for form in ("dict", "tuple"):
        if not rounds.get(form):
            continue
        whole = [per_row(r) - floor_all for r in rounds[form]]
        out[form] = {"us_per_row": round(statistics.median(whole), 2), "rounds_us": [round(v, 2) for v in whole],
                     **{f"{k}_us": round(statistics.median(per_row(r, k) for r in rounds[form]) - floor[k], 2)
                        for k in ("loop", "writer", "engine")}}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=4000, help="rows per second (default 4000)")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per form and round (default 8)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--child", choices=FORMS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rate < 100:
        parser.error("--rate must be at least 100 rows/s (rows go out 100 ticks a second)")
    if args.child:
        print(json.dumps(asyncio.run(child(args.child, args.rate, args.seconds))))
        return 0
    rounds = interleaved(FORMS, args.rounds, lambda form: run_child(form, args),
                         lambda form, r: f"{form:6s} {r['cpu_s'] / r['wall_s'] * 1000:6.1f} ms CPU/s "
                                         f"({r['rows']} rows in {r['wall_s']:.1f} s)")
    summary = report(rounds)
    print(f"\nProcess CPU per `requests` row at {args.rate} rows/s above the floor, median of {args.rounds} rounds:")
    for form, row in summary.items():
        print(f"  {form:6s} {row['us_per_row']:5.1f} µs  (loop thread {row['loop_us']:.1f}, writer threads "
              f"{row['writer_us']:.1f}, engine threads {row['engine_us']:.1f}; rounds {row['rounds_us']})")
    if "dict" in summary and "tuple" in summary and summary["dict"]["us_per_row"] > 0:
        print(f"  tuple / dict: {summary['tuple']['us_per_row'] / summary['dict']['us_per_row']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                               "rate": args.rate, "seconds": args.seconds, "summary": summary,
                                               "rounds": rounds}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
