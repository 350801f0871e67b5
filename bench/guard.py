"""The guard's price on a plain call (issue 32): what PII and toxicity scanning add, and where it goes.

Workload: non-streamed chat completions of ~240 characters each way (every request and every answer
a different text: sentences drawn from a pool, a few with a name, a place, a product or an email),
against an instant upstream, open loop at 20/50/100/200 req/s, beside direct. Targets:

  * `off`: no detectors (what Warden itself adds);
  * `guard`: the chain of examples/warden.yaml: secrets and injection in-line, toxicity
    (`toxic_bilstm`) and PII (presidio + spaCy) through the scanner, request and response, its rules;
  * `secrets`, `injection`, `toxicity`, `pii`: each detector alone (with the guard's rules);
  * `guard-nocache`: the guard with the scanner detectors' findings cache off (`cache_entries: 0`).

`--history N` makes each request a turn of a conversation, as chat clients and agents send them: a
system prompt shared by every conversation, the conversation's earlier turns (up to N user and N
assistant messages) and the new question; 16 conversations run interleaved, each N+1 turns long. A
conversation repeats its earlier turns on every request: `guard` against `guard-nocache` is what
the findings cache (docs/policy.md) saves there. Without it every text is new (the cache cannot help).

Per target and rate: added p50/p99 (target minus direct, pooled over rounds), failures, the scanner's
CPU per request (its processes, from /proc) split by task and stage from the scanner's own
`warden_scanner_cpu_seconds_total` (tokenize, ner, recognizers, forward; `ipc` is the rest of the
scanner's CPU: socket, decode, batching, encode), the proxy's CPU per request, and the scanner's mean
batch size. The saturation rate is the first rate whose added p99 exceeds 50 ms (or that fails
requests). Rounds are interleaved (round 1 of every target at every rate, then round 2), so a noisy
minute on a shared machine hits all targets alike; the spread between rounds is printed.

    .venv/bin/python -m bench.guard                       # ~9 minutes; JSON to bench/results/guard.json
    .venv/bin/python -m bench.guard --only off,guard --rates 50 --rounds 1 --label quick --out /tmp/g.json
    .venv/bin/python -m bench.guard --history 8 --only guard,guard-nocache --rates 5,10,20 --label history-8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.harness import (
    API_KEY,
    RESULTS,
    ROOT,
    Child,
    bench_command,
    chat_upstream,
    cpu_seconds,
    free_port,
    machine,
    percentile_ms,
    process_cpu_seconds,
    wait_ready,
)

PROMPT_PARTS = (
    "Could you help me plan a three-day trip to Lisbon in May with some time for museums?",
    "I need a short summary of the attached meeting notes for the team, in plain words.",
    "What is the difference between a list and a tuple in Python, and when should I use each?",
    "My manager Sarah asked for a status update on the migration to Kubernetes this week.",
    "Please rewrite this paragraph so that it sounds friendlier but stays professional.",
    "how do i make the build faster when the cache is cold on every pull request run?",
    "Write a haiku about autumn rain falling on an old wooden roof in the mountains.",
    "We are comparing PostgreSQL and ClickHouse for analytics over billions of rows.",
    "Explain in simple terms why the sky looks blue during the day and red at sunset.",
    "Draft a polite reminder to a customer whose invoice is now two weeks overdue.",
    "Send the final report to jordan.miles@example.org once the numbers are checked.",
    "Give me three ideas for a vegetarian dinner that takes less than thirty minutes.",
    "The service returns a timeout error after about sixty seconds under heavy load.",
    "Translate the following sentence into French and keep the tone informal please.",
    "Our office in Manchester moves to a new building next month; what should we plan?",
    "List the main steps to rotate an API key without downtime for existing clients.",
)
ANSWER_PARTS = (
    "Sure! Here is a short plan that keeps the mornings free for museums and walks.",
    "The main difference is that a tuple cannot be changed after it is created.",
    "In short, shorter blue wavelengths are scattered more by the air than red ones.",
    "Here is a friendlier version that keeps the same meaning and a professional tone.",
    "You could cache dependencies between runs and split the test suite into shards.",
    "For analytics over billions of rows, a columnar store such as ClickHouse fits well.",
    "A polite reminder could start by thanking them and then restate the amount due.",
    "Three quick ideas: a chickpea curry, a mushroom risotto and a halloumi salad.",
    "To rotate a key safely, issue the new one first and accept both for a while.",
    "Timeouts under load usually mean a queue is full somewhere; check the pool sizes.",
    "Autumn rain taps / on the cedar roof all night / the old house listens.",
    "Lisbon in May is warm and busy, so book the tram tour and the castle early.",
    "Let me know if you would like a longer version or a different tone for it.",
    "The migration status: two services are done, three are in review, one is blocked.",
    "Voici la phrase, sur un ton familier comme demandé, sans changer le sens.",
    "Moving offices goes smoother with a checklist for network, desks and mail.",
)
RATES = (20, 50, 100, 200)
GUARD = ("secrets", "injection", "toxicity", "pii")
TARGETS = ("direct", "off", "guard", *GUARD, "guard-nocache")
SYSTEM_PROMPT = ("You are Ava, the support assistant of Northwind Bank in Dublin. Answer questions about "
                 "accounts, cards and transfers politely and briefly. Never ask for a full card number or a "
                 "password, and send anything about fraud to the security team at once.")
CONVERSATIONS = 16
SATURATED_MS = 50.0
TEXT_CHARS = 240


def text_for(parts: tuple[str, ...], k: int) -> str:
    """The k-th text of ~240 characters: sentences picked by k's digits in base len(parts). Three sentences
    give n**3 texts (4,096); past them a lowercase tag ("(ref bq)") keeps every k's text its own, so no
    text recurs in a run and the findings cache has nothing to answer that a user would not resend."""
    n = len(parts)
    out: list[str] = []
    step = 0
    while sum(len(p) + 1 for p in out) < TEXT_CHARS - 40:
        out.append(parts[(k // n ** step + 5 * step) % n])
        step += 1
    if rest := k // n ** step:
        out.append(f"(ref {_letters(rest)})")
    return " ".join(out)


def _letters(value: int) -> str:
    word = ""
    while value:
        value, digit = divmod(value, 26)
        word += "abcdefghijklmnopqrstuvwxyz"[digit]
    return word


# -- children: the upstream and the load generator ---------------------------------------------------

def messages_for(i: int, history: int) -> list[dict[str, str]]:
    """Request i: a one-message question, or (history > 0) turn t of one of 16 interleaved conversations."""
    if not history:
        return [{"role": "user", "content": text_for(PROMPT_PARTS, i)}]
    lane, step = i % CONVERSATIONS, i // CONVERSATIONS
    turn, conversation = step % (history + 1), (step // (history + 1)) * CONVERSATIONS + lane
    out = [{"role": "system", "content": SYSTEM_PROMPT}]
    for t in range(turn):
        out += [{"role": "user", "content": text_for(PROMPT_PARTS, conversation * 97 + t)},
                {"role": "assistant", "content": text_for(ANSWER_PARTS, conversation * 89 + t)}]
    return [*out, {"role": "user", "content": text_for(PROMPT_PARTS, conversation * 97 + turn)}]


def run_upstream(port: int) -> None:
    from aiohttp import web

    count = iter(range(1 << 62))

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        content = text_for(ANSWER_PARTS, next(count) * 7)
        return web.json_response({
            "id": "chatcmpl-guard", "object": "chat.completion", "created": 1700000000, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 60, "completion_tokens": 60, "total_tokens": 120}})

    web.run_app(chat_upstream(chat), host="127.0.0.1", port=port, print=None, access_log=None)


async def open_loop(url: str, rate: float, duration: float, offset: int, history: int = 0) -> dict[str, Any]:
    """Request i is due at start + i/rate and sent then; latency counts from that due time."""
    import aiohttp

    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
    bodies = [json.dumps({"model": "m", "max_tokens": 64, "messages": messages_for(offset + i, history)}).encode()
              for i in range(int(rate * duration))]
    latencies: list[float] = []
    failures: dict[str, int] = {}

    async def one(session: aiohttp.ClientSession, body: bytes, due: float) -> None:
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
            return
        if status == 200:
            latencies.append(time.perf_counter() - due)
        else:
            failures[f"http_{status}"] = failures.get(f"http_{status}", 0) + 1

    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(one(session, bodies[0], time.perf_counter()) for _ in range(4)))  # warm connections
        latencies.clear()
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter() + 0.05
        for i, body in enumerate(bodies):
            due = start + i / rate
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(session, body, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=31)
    return {"scheduled": len(bodies), "ok": len(latencies), "failures": failures,
            "samples_us": [round(v * 1e6) for v in latencies]}


# -- the targets ---------------------------------------------------------------------------------

def warden_config(target: str, port: int, upstream: str, run_dir: Path, workers: int | None) -> dict[str, Any]:
    """examples/warden.yaml's guard (its detectors, scanner models and rules), or one detector of it, or none."""
    example = yaml.safe_load((ROOT / "examples" / "warden.yaml").read_text())
    names = GUARD if target.startswith("guard") else () if target == "off" else (target,)
    detectors = [d for d in example["detectors"] if d["name"] in names]
    if target == "guard-nocache":
        detectors = [d | {"cache_entries": 0} if d["type"] == "scanner" else d for d in detectors]
    tasks = {d.get("task") for d in detectors}
    scanner: dict[str, Any] = {"mode": "off"}
    if models := [m for m in example["scanner"]["models"] if m["task"] in tasks]:
        scanner = {"socket": str(run_dir / f"{target}.sock"), "torch_threads": example["scanner"]["torch_threads"],
                   "models": models} | ({"workers": workers} if workers is not None else {})
    return {"listen": {"host": "127.0.0.1", "port": port},
            "upstreams": [{"name": "default", "models": ["*"], "backends": [{"url": upstream}]}],
            "server": {"uvloop": True, "access_log": False}, "telemetry": {"enabled": False}, "scanner": scanner,
            "detectors": detectors, "policy": {"mode": "enforce", "rules": example["policy"]["rules"]}}


_SAMPLE = re.compile(r'^(warden_scanner_cpu_seconds_total|warden_scanner_batch_size_(?:sum|count))\{([^}]*)\} (\S+)$',
                     re.M)


async def _scanner_metrics(sockets: list[Path]) -> dict[str, float]:
    from detectors.runtime.client import ScannerClient, ScannerError

    out: dict[str, float] = {}
    for sock in sockets:
        client = ScannerClient(f"unix://{sock}", call_timeout_s=5)
        try:
            text = await client.metrics_text()
        except ScannerError:
            continue
        finally:
            await client.close()
        for name, labels, value in _SAMPLE.findall(text):
            fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
            key = f"{fields['task']}/{fields['stage']}" if name.startswith("warden_scanner_cpu") else \
                f"{fields['task']}/batch_{name.rsplit('_', 1)[1]}"
            out[key] = out.get(key, 0.0) + float(value)
    return out


class Live:
    def __init__(self, target: str, upstream: str, run_dir: Path, workers: int | None) -> None:
        self.target = target
        self.children: list[Child] = []
        self.url = upstream
        if target == "direct":
            return
        port = free_port()
        config = run_dir / f"{target}.json"
        config.write_text(json.dumps(warden_config(target, port, upstream, run_dir, workers)))
        workdir = run_dir / f"{target}.cwd"
        workdir.mkdir(exist_ok=True)
        self.children = [Child(target, [sys.executable, "-m", "proxy", "--log-level", "warning", "serve", "--config",
                                        str(config)], "0-1", run_dir, cwd=workdir)]
        self.url = f"http://127.0.0.1:{port}"
        self.run_dir = run_dir

    def snapshot(self) -> dict[str, float]:
        if not self.children:
            return {}
        # the proxy is the child itself; every other process of its group is a scanner worker
        proxy = process_cpu_seconds(self.children[0].proc.pid)
        out = {"proxy": proxy, "scanner": cpu_seconds([self.children[0].pgid]) - proxy}
        return out | asyncio.run(_scanner_metrics(sorted(self.run_dir.glob(f"{self.target}*.sock"))))


def run_load(url: str, rate: int, duration: float, offset: int, history: int = 0) -> dict[str, Any]:
    import subprocess

    argv = bench_command("guard", "load", "--url", url + "/v1/chat/completions", "--rate", str(rate),
                         "--duration", str(duration), "--offset", str(offset), "--history", str(history))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 90, check=True,
                          cwd=Path(__file__).resolve().parent.parent)
    return dict(json.loads(done.stdout))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    targets = ["direct", *[t for t in args.only.split(",") if t and t != "direct"]]
    rates = [int(r) for r in args.rates.split(",")]
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {t: {r: [] for r in rates} for t in targets}
    with tempfile.TemporaryDirectory(prefix="bench-guard-") as tmp:
        run_dir = Path(tmp)
        up_port = free_port()
        upstream = Child("upstream", bench_command("guard", "upstream", "--port", str(up_port)), "0-1", run_dir)
        lives = {t: Live(t, f"http://127.0.0.1:{up_port}", run_dir, args.workers) for t in targets}
        try:
            for live in lives.values():
                wait_ready(live.url, [upstream, *live.children], timeout_s=240)
                run_load(live.url, 20, 2, 1_000_000)  # warm-up: lazy imports, first batches (texts of its own)
            offset = 0
            for round_ in range(args.rounds):
                for rate in rates:
                    for target in targets:
                        live = lives[target]
                        if any(not c.alive() for c in live.children):
                            raise RuntimeError(f"{target} died:\n{live.children[0].log_tail()}")
                        before = live.snapshot()
                        result = run_load(live.url, rate, args.duration, offset, args.history)
                        time.sleep(0.3)  # answers in flight at the end finish their scans
                        after = live.snapshot()
                        result["cpu"] = {k: after[k] - before.get(k, 0.0) for k in after}
                        result["round"] = round_
                        runs[target][rate].append(result)
                        print(f"  round {round_ + 1} {rate:>4} req/s {target:<10} "
                              f"p50 {percentile_ms([s / 1e6 for s in result['samples_us']], 50):8.2f} ms "
                              f"ok {result['ok']}/{result['scheduled']}", file=sys.stderr, flush=True)
                    # every target gets the same requests; the next step's are new (conversations go on)
                    offset += int(rate * args.duration)
        finally:
            for live in lives.values():
                for child in live.children:
                    child.stop(grace_s=10)
            upstream.stop()
    return summarise(runs, rates)


def summarise(runs: dict[str, dict[int, list[dict[str, Any]]]], rates: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    direct = {r: sorted(s / 1e6 for run in runs["direct"][r] for s in run["samples_us"]) for r in rates}
    for target, by_rate in runs.items():
        rows: dict[str, Any] = {}
        saturation = None
        for rate in rates:
            samples = [s / 1e6 for run in by_rate[rate] for s in run["samples_us"]]
            scheduled = sum(run["scheduled"] for run in by_rate[rate])
            failed = scheduled - len(samples)
            row: dict[str, Any] = {"p50_ms": percentile_ms(samples, 50), "p99_ms": percentile_ms(samples, 99),
                                   "ok": len(samples), "failed": failed}
            if target != "direct":
                row["added_p50_ms"] = round(row["p50_ms"] - percentile_ms(direct[rate], 50), 2)
                row["added_p99_ms"] = round(row["p99_ms"] - percentile_ms(direct[rate], 99), 2)
                row["added_p50_rounds_ms"] = [
                    round(percentile_ms([s / 1e6 for s in run["samples_us"]], 50) - percentile_ms(direct[rate], 50), 2)
                    for run in by_rate[rate] if run["samples_us"]]
                row |= _cpu(by_rate[rate])
                if saturation is None and (row["added_p99_ms"] > SATURATED_MS or failed > scheduled * 0.01):
                    saturation = rate
            rows[str(rate)] = row
        out[target] = {"rates": rows, "saturation_rate": saturation if target != "direct" else None}
    return out


def _cpu(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """CPU per request (ms), the scanner's split by task and stage, and its mean batch size per task."""
    requests = sum(run["ok"] for run in runs) or 1
    total: dict[str, float] = {}
    for run in runs:
        for key, value in run["cpu"].items():
            total[key] = total.get(key, 0.0) + value
    out: dict[str, Any] = {"proxy_cpu_ms": round(total.get("proxy", 0.0) * 1e3 / requests, 3),
                           "scanner_cpu_ms": round(total.get("scanner", 0.0) * 1e3 / requests, 3)}
    stages = {k: v for k, v in total.items() if "/" in k and "/batch_" not in k}
    split = {k: round(v * 1e3 / requests, 3) for k, v in sorted(stages.items())}
    if total.get("scanner") and stages:
        split["ipc"] = round((total["scanner"] - sum(stages.values())) * 1e3 / requests, 3)
    out["scanner_split_ms"] = split
    out["batch_mean"] = {k.split("/")[0]: round(total[k] / total[k.replace("sum", "count")], 2)
                         for k in total if k.endswith("/batch_sum") and total.get(k.replace("sum", "count"))}
    return out


def report(results: dict[str, Any], rates: list[int]) -> str:
    lines = ["| target | " + " | ".join(f"{r}/s p50 / p99" for r in rates) + " | scanner CPU/req @50 | saturates |",
             "|---|" + "---|" * (len(rates) + 2)]
    for target, result in results.items():
        if target == "direct":
            continue
        cells = [f"+{row['added_p50_ms']:.1f} / +{row['added_p99_ms']:.1f}" + (f" ({row['failed']} failed)"
                                                                              if row["failed"] else "")
                 for row in (result["rates"][str(r)] for r in rates)]
        at50 = result["rates"].get("50") or result["rates"][str(rates[0])]
        lines.append(f"| {target} | " + " | ".join(cells) + f" | {at50['scanner_cpu_ms']:.2f} ms | "
                     f"{result['saturation_rate'] or '>' + str(rates[-1])} |")
    for target, result in results.items():
        for rate, row in result["rates"].items():
            if row.get("scanner_split_ms"):
                lines.append(f"  {target} @{rate}: scanner split (ms/request) {row['scanner_split_ms']}, "
                             f"batch mean {row['batch_mean']}, proxy {row['proxy_cpu_ms']} ms, "
                             f"p50 per round {row['added_p50_rounds_ms']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    up = sub.add_parser("upstream")
    up.add_argument("--port", type=int, required=True)
    load = sub.add_parser("load")
    load.add_argument("--url", required=True)
    load.add_argument("--rate", type=float, required=True)
    load.add_argument("--duration", type=float, required=True)
    load.add_argument("--offset", type=int, default=0)
    load.add_argument("--history", type=int, default=0)
    parser.add_argument("--only", default=",".join(TARGETS[1:]), help="targets beside direct")
    parser.add_argument("--rates", default=",".join(map(str, RATES)))
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per rate, target and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="scanner.workers (default: the setting's)")
    parser.add_argument("--history", type=int, default=0, help="earlier turns each request carries (conversations)")
    parser.add_argument("--label", default="after", help="the key this run is stored under in the JSON")
    parser.add_argument("--out", type=Path, default=RESULTS / "guard.json")
    args = parser.parse_args(argv)
    if args.command == "upstream":
        run_upstream(args.port)
        return 0
    if args.command == "load":
        print(json.dumps(asyncio.run(open_loop(args.url, args.rate, args.duration, args.offset, args.history))))
        return 0
    started = time.time()
    load_before = os.getloadavg()
    results = measure(args)
    rates = [int(r) for r in args.rates.split(",")]
    print(report(results, rates))
    saved = json.loads(args.out.read_text()) if args.out.exists() else {}
    saved[args.label] = {"results": results, "machine": machine(), "seconds": round(time.time() - started),
                         "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                         "spread_note": "added_p50_rounds_ms: one value per round (interleaved)",
                         "args": {k: str(v) for k, v in vars(args).items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(saved, indent=1) + "\n")
    print(f"written to {args.out} under {args.label!r} (load average before {load_before[0]:.2f}, "
          f"{statistics.fmean(os.getloadavg()):.2f} after)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
