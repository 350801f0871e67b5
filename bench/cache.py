"""Response cache: req/s and latency for a repeated-prompt workload with the cache off and on, in one run.

A model-like upstream answers after a fixed delay (default 30 ms, a short generation); two
`warden serve` processes sit in front of it, one with the cache off and one with it on, and a
closed-loop client sends a workload that repeats a few distinct deterministic prompts
(`temperature: 0`), as JSON and as SSE streams, interleaving the two targets round by round.
A second phase prices the hit path against a plain relay: a 0 ms upstream, Warden relaying
it (cache off), and Warden answering every request from the cache.

    .venv/bin/python -m bench.cache [--delay-ms 30] [--prompts 20] [--concurrency 16] [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.harness import (
    RESULTS,
    ROOT,
    bench_command,
    chat_upstream,
    free_port,
    percentile_ms,
    start_warden,
    stop_processes,
    wait_http,
)

ANSWER = "Paris is the capital of France; it has been since the tenth century, give or take a few kings."


def upstream_app(delay_s: float) -> web.Application:
    """JSON after `delay_s`; a stream spreads the same delay over its chunks, as a model would."""
    words = ANSWER.split(" ")

    async def chat(request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        base = {"id": "chatcmpl-b", "created": 0, "model": payload.get("model", "m")}
        if not payload.get("stream"):
            await asyncio.sleep(delay_s)
            message = {"role": "assistant", "content": ANSWER}
            return web.json_response({**base, "object": "chat.completion", "choices": [
                {"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": len(words), "total_tokens": 12 + len(words)}})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i, word in enumerate(words):
            delta = {"content": word if i == 0 else " " + word}
            event = {**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
            await asyncio.sleep(delay_s / len(words))
        await response.write(b"data: [DONE]\n\n")
        return response

    return chat_upstream(chat)


def start_upstream(port: int, delay_ms: float) -> subprocess.Popen[bytes]:
    """This module's own upstream, in a process of its own: the proxies and the client must not share
    its event loop."""
    return subprocess.Popen(bench_command("cache", "--serve-upstream", str(port), "--delay-ms", str(delay_ms)),
                            cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def warden(tmp: Path, name: str, upstream: str, cache: bool) -> tuple[str, subprocess.Popen[bytes]]:
    config = {"listen": {"port": free_port()}, "telemetry": {"enabled": False},
              "upstreams": [{"name": "m", "backends": [{"url": upstream}]}], "cache": {"enabled": cache}}
    proc, url = start_warden(name, config, tmp, quiet=True)
    return url, proc


def body(prompt: int, stream: bool) -> bytes:
    return json.dumps({"model": "m", "temperature": 0, "stream": stream, "max_tokens": 64,
                       "messages": [{"role": "user", "content": f"Question {prompt}: what is the capital?"}]}).encode()


async def closed_loop(url: str, prompts: int, stream: bool, concurrency: int, seconds: float) -> dict[str, Any]:
    """`concurrency` clients, each sending the next prompt of a shared round-robin as soon as it has an answer."""
    latencies: list[float] = []
    hows: dict[str, int] = {}
    errors = 0
    counter = iter(range(1 << 62))
    bodies = [body(p, stream) for p in range(prompts)]
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with session.post(url + "/v1/chat/completions", data=bodies[next(counter) % prompts],
                                        headers=headers) as resp:
                    data = await resp.read()
                    how = resp.headers.get("X-Warden-Cache", "-")
                if resp.status != 200 or (stream and not data.rstrip().endswith(b"[DONE]")):
                    errors += 1
                latencies.append(time.perf_counter() - started)
                hows[how] = hows.get(how, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "rps": len(latencies) / elapsed, "errors": errors, "cache": hows,
            "p50_ms": statistics.median(latencies) * 1000, "p99_ms": percentile_ms(latencies, 99)}


async def sequential(url: str, n: int) -> dict[str, Any]:
    """One request at a time on a keep-alive connection: the per-request latency with no queueing."""
    latencies = []
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            started = time.perf_counter()
            async with session.post(url + "/v1/chat/completions", data=body(0, False),
                                    headers={"Content-Type": "application/json"}) as resp:
                await resp.read()
            latencies.append(time.perf_counter() - started)
    return {"p50_ms": statistics.median(latencies) * 1000, "p99_ms": percentile_ms(latencies, 99)}


def med(rounds: list[dict[str, Any]], key: str) -> float:
    middle: float = statistics.median(r[key] for r in rounds)
    return middle


async def run(args: argparse.Namespace) -> dict[str, Any]:
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[str, Any] = {"workload": {}, "hit_path": {}}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        try:
            slow, fast = free_port(), free_port()
            procs += [start_upstream(slow, args.delay_ms), start_upstream(fast, 0.0)]
            slow_url, fast_url = f"http://127.0.0.1:{slow}", f"http://127.0.0.1:{fast}"
            targets = {"cache off": warden(tmp, "off", slow_url, False), "cache on": warden(tmp, "on", slow_url, True),
                       "relay (0 ms upstream)": warden(tmp, "relay", fast_url, False),
                       "hit (0 ms upstream)": warden(tmp, "hit", fast_url, True)}
            procs += [p for _, p in targets.values()]
            for url in (slow_url, fast_url):
                await wait_http(url + "/v1/models")
            for url, proc in targets.values():
                await wait_http(url + "/readyz", proc)
            for stream in (False, True):
                kind = "sse" if stream else "json"
                rounds: dict[str, list[dict[str, Any]]] = {"cache off": [], "cache on": []}
                for r in range(args.rounds):
                    for name in rounds:
                        res = await closed_loop(targets[name][0], args.prompts, stream, args.concurrency, args.seconds)
                        rounds[name].append(res)
                        print(f"# {kind} round {r + 1} {name}: {res['rps']:.0f} req/s, p50 {res['p50_ms']:.1f} ms, "
                              f"p99 {res['p99_ms']:.1f} ms, {res['cache']}, errors {res['errors']}", flush=True)
                results["workload"][kind] = rounds
            hit_url = targets["hit (0 ms upstream)"][0]
            await sequential(hit_url, 1)  # warm: the single prompt is now cached
            for name in ("relay (0 ms upstream)", "hit (0 ms upstream)"):
                url = targets[name][0]
                seq = await sequential(url, args.sequential)
                loop = await closed_loop(url, 1, False, args.concurrency, args.seconds)
                results["hit_path"][name] = {"sequential": seq, "closed_loop": loop}
                print(f"# {name}: sequential p50 {seq['p50_ms']:.2f} ms p99 {seq['p99_ms']:.2f} ms; "
                      f"{loop['rps']:.0f} req/s at c={args.concurrency}, {loop['cache']}", flush=True)
        finally:
            stop_processes(procs)
    return results


def report(args: argparse.Namespace, results: dict[str, Any]) -> str:
    lines = [f"upstream delay {args.delay_ms:g} ms, {args.prompts} distinct prompts repeated, temperature 0, "
             f"concurrency {args.concurrency}, {args.seconds:g} s x {args.rounds} interleaved rounds (median)", "",
             "| workload | cache | req/s | p50 ms | p99 ms | hits | speed-up |", "|---|---|---|---|---|---|---|"]
    for kind, rounds in results["workload"].items():
        off = med(rounds["cache off"], "rps")
        for name, rs in rounds.items():
            hits = sum(r["cache"].get("hit", 0) + r["cache"].get("coalesced", 0) for r in rs)
            total = sum(r["requests"] for r in rs)
            lines.append(f"| {kind} | {name.split()[1]} | {med(rs, 'rps'):.0f} | {med(rs, 'p50_ms'):.2f} | "
                         f"{med(rs, 'p99_ms'):.2f} | {hits / total:.1%} | {med(rs, 'rps') / off:.2f}x |")
    relay, hit = results["hit_path"]["relay (0 ms upstream)"], results["hit_path"]["hit (0 ms upstream)"]
    lines += ["", "| hit path vs plain relay (0 ms upstream) | relay | hit | hit / relay |", "|---|---|---|---|"]
    for label, a, b in (("sequential p50 ms", relay["sequential"]["p50_ms"], hit["sequential"]["p50_ms"]),
                        ("sequential p99 ms", relay["sequential"]["p99_ms"], hit["sequential"]["p99_ms"]),
                        (f"req/s at c={args.concurrency}", relay["closed_loop"]["rps"], hit["closed_loop"]["rps"])):
        lines.append(f"| {label} | {a:.2f} | {b:.2f} | {b / a:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delay-ms", type=float, default=30.0)
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sequential", type=int, default=300)
    parser.add_argument("--json", default=str(RESULTS / "cache.json"))
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        web.run_app(upstream_app(args.delay_ms / 1000), host="127.0.0.1", port=args.serve_upstream,
                    access_log=None, print=None)
        return
    results = asyncio.run(run(args))
    table = report(args, results)
    print(table)
    env = {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
           "load_avg": os.getloadavg(), "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"args": vars(args), "env": env, "results": results, "table": table},
                                          indent=2))


if __name__ == "__main__":
    main()
