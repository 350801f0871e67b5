"""Streaming under policy: time to first token and inter-chunk delay, direct vs Warden in three modes.

The upstream streams a fixed answer token by token at a steady pace (like a model server);
Warden runs as a real `warden serve` process with detectors off, in audit mode, and in enforce
mode (secrets, canaries, injection rules: in-line detectors, so the numbers show the hold-back
window's cost rather than a model's). Everything is measured in the same run; what matters is
each mode's difference from direct.

    .venv/bin/python -m bench.streaming [--tokens 200] [--interval-ms 5] [--streams 20]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.harness import RESULTS, chat_upstream, free_port, percentile_ms, start_warden, stop_processes, wait_http

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "the", "model", "keeps",
         "talking", "about", "nothing", "much"]


def upstream_app(tokens: int, interval_s: float) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": "b", "object": "chat.completion.chunk", "created": 0, "model": "m"}
        for i in range(tokens):
            delta = {"content": WORDS[i % len(WORDS)] + " "}
            await response.write(f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': delta}]})}\n\n"
                                 .encode())
            await asyncio.sleep(interval_s)
        await response.write(b"data: [DONE]\n\n")
        return response

    return chat_upstream(chat)


def warden_config(port: int, upstream: str, mode: str | None) -> dict[str, Any]:
    config: dict[str, Any] = {"listen": {"port": port}, "telemetry": {"enabled": False},
                              "upstreams": [{"name": "m", "backends": [{"url": upstream}]}]}
    if mode is not None:
        config["detectors"] = [{"name": "secrets", "type": "patterns", "canaries": ["zebra-canary"]},
                               {"name": "injection", "type": "injection_rules"}]
        config["policy"] = {"mode": mode, "rules": [{"detector": "*", "action": "block"}]}
    return config


async def one_stream(session: aiohttp.ClientSession, url: str) -> tuple[float, list[float]]:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    started = time.perf_counter()
    arrivals: list[float] = []
    async with session.post(url + "/v1/chat/completions", json=body) as resp:
        async for line in resp.content:
            if line.startswith(b"data: {") and b'"content"' in line:
                arrivals.append(time.perf_counter())
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    return arrivals[0] - started, gaps


async def measure(url: str, streams: int) -> dict[str, float]:
    ttfts, gaps = [], []
    async with aiohttp.ClientSession() as session:
        await one_stream(session, url)  # warm-up
        for _ in range(streams):
            ttft, chunk_gaps = await one_stream(session, url)
            ttfts.append(ttft)
            gaps += chunk_gaps
    return {"ttft_ms": statistics.median(ttfts) * 1000, "gap_p50_ms": statistics.median(gaps) * 1000,
            "gap_p99_ms": percentile_ms(gaps, 99), "chunks": len(gaps) / streams + 1}


async def main_async(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    runner = web.AppRunner(upstream_app(args.tokens, args.interval_ms / 1000))
    await runner.setup()
    up_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", up_port).start()
    upstream = f"http://127.0.0.1:{up_port}"
    results = {"direct": await measure(upstream, args.streams)}
    with tempfile.TemporaryDirectory() as tmp:
        for name, mode in (("detectors off", None), ("audit", "audit"), ("enforce", "enforce")):
            proc, url = start_warden(name.replace(" ", "_"), warden_config(free_port(), upstream, mode), Path(tmp))
            try:
                await wait_http(url + "/readyz", proc)
                results[name] = await measure(url, args.streams)
            finally:
                stop_processes([proc])
    await runner.cleanup()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--interval-ms", type=float, default=5.0)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--json", default=str(RESULTS / "streaming.json"))
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    direct = results["direct"]
    print(f"upstream: {args.tokens} tokens, one every {args.interval_ms:g} ms; {args.streams} streams per target")
    print("| target | TTFT ms | +TTFT vs direct | chunk gap p50 ms | p99 ms | chunks/stream |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['ttft_ms']:.2f} | {r['ttft_ms'] - direct['ttft_ms']:+.2f} | {r['gap_p50_ms']:.2f} | "
              f"{r['gap_p99_ms']:.2f} | {r['chunks']:.0f} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
