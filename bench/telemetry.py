"""Telemetry benchmark: rows/s into chDB, inserts per table at 1,000 requests/s, latency added.

    .venv/bin/python -m bench.telemetry [--seconds 20] [--rate 100] [--json out.json]

1. Throughput: rows/s sustained through TelemetryWriter (emit, batch, columns, insert) into
   chDB, against raw clickhouse-connect inserts of ready-made columns in the same process (the
   engine-plus-client ceiling). Target >= 100,000 rows/s on 2 cores.
2. Inserts per second per table: the writer with default settings fed 1,000 requests/s (one
   `requests` row each, a `detections` row for one in five). Target <= 1.
3. Three `warden serve` processes side by side (telemetry off; on, chDB; on, store unreachable
   so every batch goes to the spool) against one tiny upstream, open loop: every tick sends one
   request to each, so load swings on a shared machine hit all three alike. Reported: latency
   percentiles, the median of the per-tick difference against "off", the proxy's CPU per 1,000
   requests, inserts per second per table from its /metrics. Target: no latency added.
4. emit() itself: nanoseconds per call.
5. Event-loop stalls: gaps of a 0.5 ms ticker on the loop, alone and then while the writer
   (default settings) is fed 200 rows/s and flushes into chDB. Each flush is one insert of
   ~12-15 ms of engine work whatever its size; what it costs the proxy is how long the loop waits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import (
    ROOT,
    bench_command,
    chat_upstream,
    free_port,
    percentile_ms,
    process_cpu_seconds,
    start_warden,
    stop_processes,
    wait_http,
)
from proxy.settings import WardenSettings
from proxy.telemetry import TABLES, TelemetryWriter
from proxy.telemetry.settings import TelemetrySettings

ANSWER = json.dumps({"id": "x", "object": "chat.completion", "model": "m", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})


def row(i: int) -> dict[str, Any]:
    return {"ts": int(time.time() * 1000), "request_id": f"req-{i:012d}", "tenant": f"t{i % 7}",
            "api_key_id": f"k{i % 50}", "route": "/v1/chat/completions", "model": f"model-{i % 4}",
            "backend": f"http://10.0.0.{i % 3}:8000", "status": 200 if i % 50 else 500, "stream": bool(i % 2),
            "latency_ms": 10.0 + i % 90, "ttfb_ms": 3.5, "upstream_ms": 9.0 + i % 90, "prompt_tokens": 20 + i % 300,
            "completion_tokens": 40 + i % 500, "verdict": "allow", "model_version": "v1", "attrs": {}}


# -- 1. throughput into chDB -----------------------------------------------------------------------

def raw_inserts(client: Any, database: str, batch: int, rounds: int) -> float:
    table = TABLES["requests"]
    rows = [row(i) for i in range(batch)]
    columns = [[r.get(c.name, c.default) for r in rows] for c in table.columns]
    names = list(table.column_names)
    settings = {"async_insert": 0}
    started = time.perf_counter()
    for _ in range(rounds):  # the same wire types as the writer: LowCardinality strings sent as String
        client.insert("requests", columns, column_names=names, column_type_names=table.wire_types(names),
                      database=database, column_oriented=True, settings=settings)
    return batch * rounds / (time.perf_counter() - started)


async def through_writer(chdb_dir: str, spool: Path, batch: int, total: int) -> float:
    s = TelemetrySettings(dsn=f"chdb://{chdb_dir}", database=f"bench_{batch}", spool_dir=str(spool / str(batch)),
                          batch_rows=batch, flush_interval_s=0.2, max_buffer_rows=max(200_000, 8 * batch))
    registry = CollectorRegistry()
    writer = TelemetryWriter(s, registry)
    await writer.start()
    pool = [row(i) for i in range(10_000)]
    written = "warden_telemetry_rows_written_total"
    started = time.perf_counter()
    emitted = 0
    while emitted < total:
        for r in pool[: min(len(pool), total - emitted)]:
            writer.emit("requests", r)
            emitted += 1
        await until(lambda: writer.buffered_rows <= 4 * batch)  # callers arrive at a finite rate: pace like one
    await until(lambda: (registry.get_sample_value(written, {"table": "requests"}) or 0) >= total)
    elapsed = time.perf_counter() - started
    await writer.stop()
    return total / elapsed


async def until(check: Callable[[], bool], poll_s: float = 0.001) -> None:
    await asyncio.sleep(0)
    while True:
        if check():
            return
        await asyncio.sleep(poll_s)


async def paced(chdb_dir: str, spool: Path, rate: float, seconds: float) -> dict[str, float]:
    """The writer with default batching fed like a proxy at `rate` requests/s: each request one
    `requests` row, one in five a `detections` row. Returns inserts per second per table."""
    s = TelemetrySettings(dsn=f"chdb://{chdb_dir}", database="bench_paced", spool_dir=str(spool / "paced"))
    registry = CollectorRegistry()
    writer = TelemetryWriter(s, registry)
    await writer.start()
    started = time.perf_counter()
    for i in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        writer.emit("requests", row(i))
        if i % 5 == 0:
            writer.emit("detections", {"request_id": f"req-{i:012d}", "detector": "pii", "category": "EMAIL"})
    elapsed = time.perf_counter() - started
    inserts = {t: (registry.get_sample_value("warden_telemetry_inserts_total", {"table": t}) or 0) / elapsed
               for t in ("requests", "detections")}
    await writer.stop()
    return inserts


def emit_ns(calls: int = 500_000) -> float:
    s = TelemetrySettings(dsn="chdb://unused", spool_dir="unused", max_buffer_rows=calls + 1, batch_rows=calls + 1)
    writer = TelemetryWriter(s, CollectorRegistry())
    r = row(1)
    started = time.perf_counter_ns()
    for _ in range(calls):
        writer.emit("requests", r)
    return (time.perf_counter_ns() - started) / calls


async def ticker_gaps(seconds: float) -> list[float]:
    gaps: list[float] = []
    last = time.perf_counter()
    end = last + seconds
    while last < end:
        await asyncio.sleep(0.0005)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    return gaps


async def loop_stalls(chdb_dir: str, spool: Path, rate: float, seconds: float) -> dict[str, dict[str, float]]:
    def summary(gaps: list[float]) -> dict[str, float]:
        return {"p50_ms": percentile_ms(gaps, 50), "p99_ms": percentile_ms(gaps, 99),
                "p999_ms": percentile_ms(gaps, 99.9), "max_ms": max(gaps) * 1000}

    alone = await ticker_gaps(seconds)
    s = TelemetrySettings(dsn=f"chdb://{chdb_dir}", database="bench_stalls", spool_dir=str(spool / "stalls"))
    writer = TelemetryWriter(s, CollectorRegistry())
    await writer.start()

    async def feed() -> None:
        started = time.perf_counter()
        for i in range(int(rate * (seconds + 1))):
            await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
            writer.emit("requests", row(i))

    feeder = asyncio.create_task(feed())
    try:
        flushing = await ticker_gaps(seconds)
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        await writer.stop()
    return {"loop_alone": summary(alone), "writer_flushing": summary(flushing)}


# -- 2. through a real proxy -----------------------------------------------------------------------

def upstream_main(port: int) -> None:
    async def chat(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text=ANSWER, content_type="application/json")

    web.run_app(chat_upstream(chat), host="127.0.0.1", port=port, print=None, access_log=None)


def metric_values(text: str, name: str) -> dict[str, float]:
    return {s.labels.get("table", ""): s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == name}


async def paired_load(http: aiohttp.ClientSession, urls: dict[str, str], rate: float,
                      seconds: float) -> dict[str, list[float]]:
    """Open loop, paired: at each tick (start + i/rate) one request goes to every proxy at once, so
    a load swing on this shared machine hits all configs alike. Latency counts from the tick."""
    latencies: dict[str, list[float]] = {name: [0.0] * int(rate * seconds) for name in urls}
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    headers = {"Content-Type": "application/json"}

    async def one(name: str, i: int, due: float) -> None:
        async with http.post(urls[name], data=body, headers=headers) as r:
            await r.read()
            latencies[name][i] = time.perf_counter() - due if r.status == 200 else float("nan")

    start = time.perf_counter() + 0.05
    tasks = []
    for i in range(int(rate * seconds)):
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        names = list(urls)
        names = names[i % len(names):] + names[:i % len(names)]  # rotate: sending first is no advantage
        tasks += [asyncio.create_task(one(name, i, due)) for name in names]
    await asyncio.gather(*tasks)
    return latencies


def proxy_config(telemetry: dict[str, Any], upstream: str) -> dict[str, Any]:
    config: dict[str, Any] = {"listen": {"port": free_port()}, "telemetry": telemetry, "server": {"uvloop": True},
                              "upstreams": [{"name": "u", "backends": [{"url": upstream}]}]}
    if "scanner" in WardenSettings.model_fields:
        config["scanner"] = {"mode": "off"}
    return config


async def measure(proxies: dict[str, tuple[subprocess.Popen[bytes], str]], rate: float,
                  seconds: float) -> dict[str, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        for proc, base in proxies.values():
            await wait_http(base + "/readyz", proc)
        urls = {name: base + "/v1/chat/completions" for name, (_, base) in proxies.items()}
        await paired_load(http, urls, rate, 3.0)  # warm-up: past the first flush and first insert
        before: dict[str, dict[str, float]] = {}
        for name, (_, base) in proxies.items():
            async with http.get(base + "/metrics") as r:
                before[name] = metric_values(await r.text(), "warden_telemetry_inserts_total")
        cpu0 = {name: process_cpu_seconds(proc.pid) for name, (proc, _) in proxies.items()}
        started = time.perf_counter()
        latencies = await paired_load(http, urls, rate, seconds)
        cpu = {name: process_cpu_seconds(proc.pid) - cpu0[name] for name, (proc, _) in proxies.items()}
        await asyncio.sleep(1.5)  # one more flush interval
        wall = time.perf_counter() - started
        results: dict[str, Any] = {}
        for name, (_, base) in proxies.items():
            async with http.get(base + "/metrics") as r:
                text = await r.text()
            inserts = metric_values(text, "warden_telemetry_inserts_total")
            ok = [v for v in latencies[name] if v == v]
            pairs = [v - o for v, o in zip(latencies[name], latencies["off"], strict=True) if v == v and o == o]
            results[name] = {
                "requests": len(ok), "p50_ms": percentile_ms(ok, 50), "p90_ms": percentile_ms(ok, 90),
                "p99_ms": percentile_ms(ok, 99),
                "paired_delta_p50_ms": percentile_ms(pairs, 50), "proxy_cpu_ms_per_1k": cpu[name] / len(ok) * 1e6,
                "inserts_per_s": {t: round((n - before[name].get(t, 0)) / wall, 2) for t, n in inserts.items() if n},
                **{f"rows_{k}": sum(metric_values(text, f"warden_telemetry_rows_{k}_total").values())
                   for k in ("written", "spooled", "dropped")},
            }
        return results


def main(args: argparse.Namespace) -> dict[str, Any]:
    import clickhouse_connect

    tmp = Path(tempfile.mkdtemp(prefix="warden-bench-telemetry-"))
    chdb_dir = os.path.realpath(tmp / "chdb")
    out: dict[str, Any] = {"emit_ns": emit_ns()}
    print(f"emit(): {out['emit_ns']:.0f} ns per call")

    client = clickhouse_connect.get_client(interface="chdb", path=chdb_dir)
    writer_rates: dict[int, float] = {}
    for batch in (TelemetrySettings().batch_rows, 50_000):
        writer_rates[batch] = asyncio.run(through_writer(chdb_dir, tmp / "spool", batch, args.rows))
        raw = raw_inserts(client, f"bench_{batch}", batch, max(3, 200_000 // batch))
        ratio = writer_rates[batch] / raw
        out[f"throughput_batch_{batch}"] = {"writer_rows_s": writer_rates[batch], "raw_client_rows_s": raw,
                                            "writer_vs_raw": ratio}
        print(f"chDB, batch {batch:>6}: writer {writer_rates[batch]:>9,.0f} rows/s   raw client.insert "
              f"{raw:>9,.0f} rows/s   writer/raw {ratio:.2f}   (target >= 100,000 rows/s)")
    client.close()
    paced_rate = 1000.0
    out["inserts_per_s_at_1000_rps"] = asyncio.run(paced(chdb_dir, tmp / "spool", paced_rate, args.seconds))
    print(f"writer fed {paced_rate:.0f} requests/s for {args.seconds:.0f} s (default batching): inserts/s per table "
          f"{ {t: round(v, 2) for t, v in out['inserts_per_s_at_1000_rps'].items()} }  (target <= 1)")

    out["loop_stalls"] = asyncio.run(loop_stalls(chdb_dir, tmp / "spool", 200.0, args.seconds))
    print("event-loop gaps of a 0.5 ms ticker, ms (p50 / p99 / p99.9 / max): " + "; ".join(
        f"{name} {v['p50_ms']:.2f} / {v['p99_ms']:.2f} / {v['p999_ms']:.2f} / {v['max_ms']:.2f}"
        for name, v in out["loop_stalls"].items()))

    up_port = free_port()
    upstream_url = f"http://127.0.0.1:{up_port}"
    children = [subprocess.Popen(bench_command("telemetry", "--upstream", str(up_port)), cwd=ROOT,
                                 stdin=subprocess.DEVNULL)]
    away = f"http://127.0.0.1:{free_port()}/warden"  # nothing listens there
    configs: dict[str, dict[str, Any]] = {
        "off": {"enabled": False},
        "chdb": {"dsn": "chdb://store", "spool_dir": "spool-chdb"},
        "store-away": {"dsn": away, "spool_dir": "spool-away", "insert_timeout_s": 1},
    }
    try:
        proxies = {name: start_warden(name, proxy_config(telemetry, upstream_url), tmp / "proxies",
                                        log_level="error")
                   for name, telemetry in configs.items()}
        children += [proc for proc, _ in proxies.values()]
        runs = asyncio.run(measure(proxies, args.rate, args.seconds))
    finally:
        stop_processes(children, grace_s=30)
    print(f"\nthrough `warden serve`, three proxies side by side, each at {args.rate:.0f} requests/s for "
          f"{args.seconds:.0f} s (open loop, each tick sent to all three at once):")
    print(f"{'config':<11} {'requests':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'paired Δp50':>11} "
          f"{'CPU ms/1k':>9}  inserts/s per table; rows written/spooled/dropped")
    for name, r in runs.items():
        print(f"{name:<11} {r['requests']:>8} {r['p50_ms']:>7.2f} {r['p90_ms']:>7.2f} {r['p99_ms']:>7.2f} "
              f"{r['paired_delta_p50_ms']:>+11.3f} {r['proxy_cpu_ms_per_1k']:>9.0f}  {r['inserts_per_s'] or '-'}; "
              f"{r['rows_written']:.0f}/{r['rows_spooled']:.0f}/{r['rows_dropped']:.0f}")
    out["proxy"] = runs
    return out


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--upstream":
        upstream_main(int(sys.argv[2]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows pushed through the writer per batch size")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="requests per second through each of the three proxies (2 cores also run the load "
                             "generator and the upstream)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds (proxies, paced writer)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    result = main(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
