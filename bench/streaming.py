"""Streaming under policy, as users see it: direct vs Warden at 1 to 256 concurrent streams.

A model-like upstream (its own process) streams a fixed answer of about 680 characters, one
e-mail address in the middle, 5 characters every 20 ms (about 50 tokens/s), on an absolute
schedule so that its pace does not drift when the machine is busy. Warden runs as real `warden
serve` processes: detectors off, audit mode, and enforce mode with PII (presidio in the scanner
process) and secrets redacting the answer. Each wave starts N streams at once against one
target; every target runs at every concurrency in the same run, so each figure is a difference
from direct measured minutes apart at most. Under enforce, three stream shapes: chat content,
tool-call arguments (`delta.tool_calls[].function.arguments`) and the Responses API
(`response.output_text.delta`).

Per wave: time to first token added over direct (p50), total stream time over direct's (p50),
the largest gap between text deltas in each stream (p50, p95), leaks (the address reaching the
client under enforce), broken streams (an error, no proper ending, a lost or altered text) and
the scanner's CPU per streamed KB (the scanner process's CPU time during the wave).

    .venv/bin/python -m bench.streaming [--concurrency 1,16,64,256] [--rounds 1] [--label after]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.harness import (
    Child,
    bench_command,
    cpu_seconds,
    free_port,
    machine,
    percentile,
    process_cpu_seconds,
    start_warden,
    stop_processes,
    wait_http,
)
from proxy.wire.streams import stream_text

EMAIL = "jane.doe@example.com"
SENTENCES = [
    "thanks for waiting while the report was put together for the team this week.",
    "the numbers look steady and most of the work went as planned, with a few small delays.",
    "shipping moved two days later than we hoped because a supplier ran short of parts.",
    f"if anything here looks wrong, write to {EMAIL} and we will look at it again.",
    "next week we will review the budget and decide which projects keep going.",
    "the new build passed its checks and the rollout can start whenever you are ready.",
    "please keep the notes short, and send questions before the meeting so we can prepare.",
    "that is all for now, have a good evening and see you on monday.",
]
ANSWER = " ".join(s[0].upper() + s[1:] for s in SENTENCES)
REDACTED = ANSWER.replace(EMAIL, "<EMAIL_ADDRESS>")
SHAPES = ("chat", "tools", "responses")


# -- the upstream (a child process) ------------------------------------------------------------------

def _sse(event: dict[str, Any], name: str = "") -> bytes:
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return _sse({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def _pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def upstream_app(chars: int, interval_s: float) -> web.Application:
    async def paced(response: web.StreamResponse, events: list[bytes]) -> None:
        start = time.monotonic()
        for number, event in enumerate(events):
            await response.write(event)
            delay = start + (number + 1) * interval_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def chat(request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if payload.get("tools"):
            call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "reply", "arguments": ""}}
            await response.write(_chunk({"role": "assistant", "tool_calls": [call]}))
            args = json.dumps({"text": ANSWER})
            await paced(response, [_chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]})
                                   for p in _pieces(args, chars)])
            await response.write(_chunk({}, "tool_calls") + b"data: [DONE]\n\n")
        else:
            await response.write(_chunk({"role": "assistant", "content": ""}))
            await paced(response, [_chunk({"content": p}) for p in _pieces(ANSWER, chars)])
            await response.write(_chunk({}, "stop") + b"data: [DONE]\n\n")
        return response

    async def responses(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base: dict[str, Any] = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
        item: dict[str, Any] = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": ANSWER, "annotations": []}]}
        created = {"response": {"id": "r", "status": "in_progress", "output": []}}
        head: list[tuple[str, dict[str, Any]]] = [("response.created", created),
                ("response.output_item.added", {"output_index": 0, "item": {**item, "content": []}})]
        await response.write(b"".join(_sse({"type": n, **e}, n) for n, e in head))
        await paced(response, [_sse({"type": "response.output_text.delta", **base, "delta": p},
                                    "response.output_text.delta") for p in _pieces(ANSWER, chars)])
        tail: list[tuple[str, dict[str, Any]]] = [("response.output_text.done", {**base, "text": ANSWER}),
                ("response.output_item.done", {"output_index": 0, "item": item}),
                ("response.completed", {"response": {"id": "r", "status": "completed", "output": [item]}})]
        await response.write(b"".join(_sse({"type": n, **e}, n) for n, e in tail))
        return response

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/responses", responses)
    app.router.add_get("/v1/models", models)
    return app


# -- Warden's configurations -------------------------------------------------------------------------

def warden_config(port: int, upstream: str, mode: str | None, tmp: Path, name: str) -> dict[str, Any]:
    config: dict[str, Any] = {"listen": {"port": port}, "telemetry": {"enabled": False},
                              # the group's cap (64 by default) would queue the 256-stream wave: raised, so
                              # that the figures show enforcement, not the cap
                              "upstreams": [{"name": "m", "max_concurrency": 1024, "backends": [{"url": upstream}]}]}
    if mode is not None:
        config["scanner"] = {"socket": str(tmp / f"{name}.sock"), "torch_threads": 1,
                             "models": [{"task": "pii", "kind": "pii"}]}
        config["detectors"] = [
            {"name": "pii", "type": "scanner", "task": "pii", "on_error": "closed", "timeout_s": 30},
            {"name": "secrets", "type": "patterns", "canaries": ["zebra-canary-7f3a"]},
        ]
        config["policy"] = {"mode": mode, "rules": [{"detector": "*", "action": "redact"}]}
    return config


# -- one stream, one wave ----------------------------------------------------------------------------

REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("/v1/chat/completions", {"model": "m", "stream": True,
                                      "messages": [{"role": "user", "content": "the weekly report, please"}]}),
    "tools": ("/v1/chat/completions", {"model": "m", "stream": True,
                                       "messages": [{"role": "user", "content": "the weekly report, please"}],
                                       "tools": [{"type": "function", "function": {"name": "reply"}}]}),
    "responses": ("/v1/responses", {"model": "m", "stream": True, "input": "the weekly report, please"}),
}
TEXT_MARKS = (b'"content":"', b'"arguments":"', b'"type":"response.output_text.delta"')


def _expected(shape: str, redacted: bool) -> str:
    text = REDACTED if redacted else ANSWER
    return json.dumps({"text": text}) if shape == "tools" else text


async def one_stream(session: aiohttp.ClientSession, url: str, shape: str, enforced: bool) -> dict[str, Any]:
    path, body = REQUESTS[shape]
    started = time.perf_counter()
    arrivals: list[float] = []
    raw: list[bytes] = []
    try:
        async with session.post(url + path, json=body) as resp:
            async for line in resp.content:
                raw.append(line)
                if line.startswith(b"data:") and any(m in line for m in TEXT_MARKS) and b'":""' not in line:
                    arrivals.append(time.perf_counter())
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return {"broken": True, "leak": False, "why": repr(exc)}
    ended = time.perf_counter()
    data = b"".join(raw)
    ending = b"[DONE]" if shape != "responses" else b"response.completed"
    texts = stream_text(data, "responses" if shape == "responses" else "chat")
    text = texts[0] if texts else ""
    why = ("status" if status != 200 else "error event" if b'"error"' in data else
           "no ending" if ending not in data else "no text" if not arrivals else
           "text differs" if text != _expected(shape, enforced) else "")
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    return {"broken": bool(why), "why": why, "leak": enforced and EMAIL.encode() in data,
            "ttft": arrivals[0] - started if arrivals else None, "total": ended - started,
            "largest_gap": max(gaps) if gaps else None}


async def wave(url: str, streams: int, shape: str, enforced: bool) -> list[dict[str, Any]]:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await one_stream(session, url, shape, enforced)  # warm-up: a connection and the code paths
        return list(await asyncio.gather(*(one_stream(session, url, shape, enforced) for _ in range(streams))))


def _p(values: list[float], q: float) -> float | None:
    value = percentile(values, q)
    return None if value is None else round(value * 1000, 1)


def summarise(rows: list[dict[str, Any]], scanner_cpu_s: float, proxy_cpu_s: float, kb: float) -> dict[str, Any]:
    ok = [r for r in rows if not r["broken"]]
    reasons: dict[str, int] = {}
    for r in rows:
        if r["broken"]:
            reasons[r["why"]] = reasons.get(r["why"], 0) + 1
    return {
        "streams": len(rows), "broken": len(rows) - len(ok), "broken_why": reasons,
        "leaks": sum(r["leak"] for r in rows),
        "ttft_p50_ms": _p([r["ttft"] for r in ok if r["ttft"] is not None], 50),
        "total_p50_ms": _p([r["total"] for r in ok], 50),
        "gap_p50_ms": _p([r["largest_gap"] for r in ok if r["largest_gap"] is not None], 50),
        "gap_p95_ms": _p([r["largest_gap"] for r in ok if r["largest_gap"] is not None], 95),
        "scanner_cpu_ms_per_kb": round(scanner_cpu_s * 1000 / kb, 2),
        "proxy_cpu_ms_per_kb": round(proxy_cpu_s * 1000 / kb, 2),
    }


# -- the run ----------------------------------------------------------------------------------------

TARGETS = (("detectors off", None), ("audit", "audit"), ("enforce", "enforce"))


async def run_round(upstream: str, wardens: dict[str, tuple[Any, str]], levels: list[int],
                    shapes: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for streams in levels:
        kb = (streams + 1) * len(ANSWER) / 1024  # the wave's streams and its warm-up stream
        level: dict[str, Any] = {"direct": summarise(await wave(upstream, streams, "chat", False), 0, 0, kb)}
        plan = [(name, "chat") for name, _ in TARGETS] + [("enforce", s) for s in shapes if s != "chat"]
        for name, shape in plan:
            proc, url = wardens[name]
            before = cpu_seconds([proc.pid]), process_cpu_seconds(proc.pid)
            rows = await wave(url, streams, shape, name == "enforce")
            total, own = cpu_seconds([proc.pid]) - before[0], process_cpu_seconds(proc.pid) - before[1]
            label = name if shape == "chat" else f"{name} ({shape})"
            level[label] = summarise(rows, total - own, own, kb)
        direct = level["direct"]
        for label, s in level.items():
            s["ttft_added_ms"] = _diff(s["ttft_p50_ms"], direct["ttft_p50_ms"])
            s["total_ratio"] = (round(s["total_p50_ms"] / direct["total_p50_ms"], 3)
                                if s["total_p50_ms"] and direct["total_p50_ms"] else None)
            print(_line(streams, label, s), flush=True)
        out[str(streams)] = level
    return out


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 1)


def _line(streams: int, label: str, s: dict[str, Any]) -> str:
    return (f"| {streams} | {label} | {s['ttft_added_ms']} | {s['total_ratio']} | {s['gap_p50_ms']} / "
            f"{s['gap_p95_ms']} | {s['leaks']} | {s['broken']} | {s['scanner_cpu_ms_per_kb']} |")


async def main_async(args: argparse.Namespace) -> list[dict[str, dict[str, Any]]]:
    levels = [int(n) for n in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        cpus = f"0-{(os.cpu_count() or 1) - 1}"
        upstream_child = Child("upstream", bench_command("streaming", "--serve-upstream", str(port),
                                                         "--chars", str(args.chars),
                                                         "--interval-ms", str(args.interval_ms)), cpus, tmp)
        upstream = f"http://127.0.0.1:{port}"
        wardens: dict[str, tuple[Any, str]] = {}
        try:
            await wait_http(upstream + "/v1/models")
            for name, mode in TARGETS:
                key = name.replace(" ", "_")
                wardens[name] = start_warden(key, warden_config(free_port(), upstream, mode, tmp, key), tmp)
            for proc, url in wardens.values():
                await wait_http(url + "/readyz", proc, timeout_s=240)
            print("| streams | target | TTFT added ms (p50) | total vs direct (p50) | largest gap p50 / p95 ms | "
                  "leaks | broken | scanner CPU ms/KB |")
            print("|---|---|---|---|---|---|---|---|")
            return [await run_round(upstream, wardens, levels, args.shapes.split(",")) for _ in range(args.rounds)]
        finally:
            stop_processes([proc for proc, _ in wardens.values()])
            upstream_child.stop()


def spread(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, list[Any]]]]:
    """Each figure's values over the rounds, for the record of how much this shared machine moved."""
    out: dict[str, dict[str, dict[str, list[Any]]]] = {}
    for level, targets in rounds[0].items():
        for target in targets:
            keys = ("ttft_added_ms", "total_ratio", "gap_p95_ms", "scanner_cpu_ms_per_kb", "leaks", "broken")
            out.setdefault(level, {})[target] = {k: [r[level][target][k] for r in rounds] for k in keys}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1,16,64,256")
    parser.add_argument("--chars", type=int, default=5, help="characters per upstream chunk")
    parser.add_argument("--interval-ms", type=float, default=20.0, help="time between upstream chunks")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="stream shapes run under enforce")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--label", default="after", help="where in the JSON this run goes (before, after, ...)")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "streaming.json"))
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        web.run_app(upstream_app(args.chars, args.interval_ms / 1000), host="127.0.0.1", port=args.serve_upstream,
                    print=None)
        return
    rounds = asyncio.run(main_async(args))
    path = Path(args.json)
    record = json.loads(path.read_text()) if path.exists() else {}
    if "runs" not in record:  # the single-mode bench's record (200 tokens, 5 ms, one stream at a time)
        record = {"earlier": record, "runs": {}}
    record["runs"].setdefault(args.label, []).append({
        "machine": machine(), "args": {k: v for k, v in vars(args).items() if k != "serve_upstream"},
        "answer_chars": len(ANSWER), "rounds": rounds, "spread": spread(rounds),
        "median": _median(rounds)})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    print(f"written to {path} under {args.label!r}", file=sys.stderr)


def _median(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for level, targets in rounds[0].items():
        for target, first in targets.items():
            row: dict[str, Any] = {}
            for key, value in first.items():
                values = [r[level][target][key] for r in rounds]
                numbers = [v for v in values if isinstance(v, (int, float))]
                row[key] = statistics.median(numbers) if len(numbers) == len(values) and numbers else value
            out.setdefault(level, {})[target] = row
    return out


if __name__ == "__main__":
    main()
