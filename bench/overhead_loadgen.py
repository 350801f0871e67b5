"""Open-loop load and streaming TTFB, run as its own (pinned) process; prints one JSON object.

Open loop: request i is due at start + i/rate and is sent then whether or not earlier ones have
answered, each on whatever keep-alive connection is free (new ones are opened as needed).
Latency is measured from the *scheduled* time, so a stall in the server (or the generator)
counts against every request it delays: no coordinated omission. `send_lag` reports how late
the generator itself sent requests (timer granularity, its own CPU), which bounds the noise it
adds; it is the same for every target, so differences against `direct` cancel most of it.

    python -m bench.overhead_loadgen rate --url http://127.0.0.1:9000/v1/chat/completions --rate 200 --duration 10
    python -m bench.overhead_loadgen ttfb --url http://127.0.0.1:9000/v1/chat/completions --iterations 400
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from typing import Any

import aiohttp

from bench.harness import API_KEY, CHAT_BODY, STREAM_BODY, summary_ms

HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}


async def open_loop(url: str, rate: float, duration: float, max_inflight: int, timeout_s: float) -> dict[str, Any]:
    total = int(rate * duration)
    latencies: list[float] = []
    lags: list[float] = []
    failures: dict[str, int] = {}
    dropped = 0
    body = CHAT_BODY.encode()
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Open a few connections first so the first scheduled requests do not pay for connect.
        await asyncio.gather(*(_one(session, url, body, time.perf_counter(), [], {}) for _ in range(4)))
        inflight: set[asyncio.Task[None]] = set()
        start = time.perf_counter() + 0.05
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            lags.append(time.perf_counter() - due)
            if len(inflight) >= max_inflight:
                dropped += 1  # the target is hopelessly behind; count it, do not pile up sockets
                continue
            task = asyncio.create_task(_one(session, url, body, due, latencies, failures))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
        elapsed = time.perf_counter() - start
        if inflight:
            await asyncio.wait(inflight, timeout=timeout_s + 1)
    return {
        "rate": rate, "duration_s": duration, "scheduled": total, "ok": len(latencies),
        "failed": sum(failures.values()), "failures": failures, "dropped": dropped,
        "achieved_send_rate": round(total / elapsed, 1) if elapsed > 0 else None,
        "latency_ms": summary_ms(latencies), "send_lag_ms": summary_ms(lags),
        "samples_us": [round(v * 1e6) for v in latencies],  # pooled across rounds by the caller
    }


async def _one(
    session: aiohttp.ClientSession, url: str, body: bytes, due: float,
    latencies: list[float], failures: dict[str, int],
) -> None:
    try:
        async with session.post(url, data=body, headers=HEADERS) as resp:
            await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        kind = type(exc).__name__
        failures[kind] = failures.get(kind, 0) + 1
        return
    if status == 200:
        latencies.append(time.perf_counter() - due)
    else:
        failures[f"http_{status}"] = failures.get(f"http_{status}", 0) + 1


async def ttfb(url: str, iterations: int, warmup: int) -> dict[str, Any]:
    """Concurrency 1: time from sending the request to the first `data:` line, and to the end."""
    first: list[float] = []
    whole: list[float] = []
    errors = 0
    body = STREAM_BODY.encode()
    connector = aiohttp.TCPConnector(limit=1, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        for i in range(warmup + iterations):
            started = time.perf_counter()
            got: float | None = None
            try:
                async with session.post(url, data=body, headers=HEADERS) as resp:
                    while True:
                        line = await resp.content.readline()
                        if not line:
                            break
                        if got is None and line.startswith(b"data:"):
                            got = time.perf_counter()
                    ok = resp.status == 200 and got is not None
            except (aiohttp.ClientError, TimeoutError, OSError):
                ok = False
            done = time.perf_counter()
            if i < warmup:
                continue
            if ok and got is not None:
                first.append(got - started)
                whole.append(done - started)
            else:
                errors += 1
    return {
        "iterations": iterations, "errors": errors, "ttfb_ms": summary_ms(first),
        "ttfb_mean_ms": round(statistics.fmean(first) * 1000, 4) if first else None,
        "stream_total_ms": summary_ms(whole), "samples_us": [round(v * 1e6) for v in first],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    rate = sub.add_parser("rate", help="open-loop latency at a fixed offered rate")
    rate.add_argument("--url", required=True)
    rate.add_argument("--rate", type=float, required=True, help="requests per second")
    rate.add_argument("--duration", type=float, default=10.0, help="seconds of scheduled sends")
    rate.add_argument("--max-inflight", type=int, default=2000)
    rate.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")
    first = sub.add_parser("ttfb", help="streaming time to first byte at concurrency 1")
    first.add_argument("--url", required=True)
    first.add_argument("--iterations", type=int, default=400)
    first.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    import uvloop

    gc.collect()
    gc.freeze()
    gc.disable()  # no collector pauses inside the measurement; a run allocates a few MB at most
    if args.mode == "rate":
        coro = open_loop(args.url, args.rate, args.duration, args.max_inflight, args.timeout)
    else:
        coro = ttfb(args.url, args.iterations, args.warmup)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(coro)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
