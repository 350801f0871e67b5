"""Can the scanner runtime feed a GPU? Its whole pipeline with the model replaced by a stub (issue 26).

A benchmark, not a test. The real scanner (server, batcher, protocol, the runtime's HF tokenizing
and padding) runs in its own process; only the forward pass is a stub returning zeros of the right
shape (`bench.scanner_ipc.NullRunner`). Two client processes of ScannerClient callers (1,024 in
all, one text per call, coalescing on, as proxy workers call it) drive it closed-loop: what it
reaches is the most texts/s the runtime could hand any device on this machine. Per config
(classifier and embedder, 128-token and chat-length texts) it reports, median of the rounds with
their spread (the machine is shared: CPU per text is the steadier figure):

  texts_per_s               completed scans per second, all clients together
  scanner_cpu_us_per_text   the scanner process's CPU, every thread
  scanner_gil_us_per_text   CPU of the scanner's Python threads outside the tokenizer's Rust calls:
                            an upper bound of the GIL-held time, which is what caps one process
  client_cpu_us_per_text    the client processes' CPU (tokenization excluded: it is the scanner's)
  tokenizer_cpu_ratio       the runtime's tokenizer CPU (its Rust calls on any thread, plus the
                            Rust pool's threads) over a single thread's floor for the same texts,
                            measured in the same run

    .venv/bin/python -m bench.scanner_null [--rounds 3] [--seconds 4] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.harness import CLK_TCK, RESULTS, process_cpu_seconds

CONFIGS = ("classifier/long", "classifier/chat", "embedder/long", "embedder/chat")
TASKS = {"classifier": "toxicity", "embedder": "embed"}
FIELDS = ("texts_per_s", "scanner_gil_us_per_text", "scanner_cpu_us_per_text", "client_cpu_us_per_text",
          "tokenizer_cpu_ratio")
TARGETS = {"scanner_gil_us_per_text": 12.0, "client_cpu_us_per_text": 20.0, "tokenizer_cpu_ratio": 1.15}
THROUGHPUT_TARGETS = {"long": 6000.0, "chat": 16000.0}


class MeteredCore:
    """The tokenizer's Rust core, with the CPU its calling threads spend inside it counted."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.cpu_s = 0.0
        self._lock = threading.Lock()

    def _timed(self, name: str, *args: Any, **kwargs: Any) -> Any:
        began = time.thread_time()
        try:
            return getattr(self.core, name)(*args, **kwargs)
        finally:
            spent = time.thread_time() - began
            with self._lock:
                self.cpu_s += spent

    def encode_batch_fast(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("encode_batch_fast", *args, **kwargs)

    def encode_batch(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("encode_batch", *args, **kwargs)

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("encode", *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.core, name)


def _meter(runner: Any) -> list[MeteredCore]:
    """Wrap every Rust core the runner's tokenizing side holds (the attribute names differ by version)."""
    meters = []
    for owner in (runner, getattr(runner, "tokens", None)):
        for name in ("_rust", "core"):
            core = getattr(owner, name, None) if owner is not None else None
            if core is not None and hasattr(core, "encode_batch"):
                meter = MeteredCore(core)
                setattr(owner, name, meter)
                meters.append(meter)
    return meters


def _thread_cpu() -> dict[int, float]:
    out = {}
    for entry in os.scandir("/proc/self/task"):
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended while we looked
        out[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def _answer_stats(conn: Connection, meters: list[MeteredCore]) -> None:
    """Per-thread CPU on request: the parent cannot tell the Python threads from the Rust pool's."""
    me = threading.get_native_id()
    while True:
        try:
            conn.recv()
        except (EOFError, OSError):
            return
        python = {t.native_id for t in threading.enumerate() if t.native_id is not None} - {me}
        conn.send({"threads": _thread_cpu(), "python": sorted(python), "me": me,
                   "encode_cpu_s": sum(m.cpu_s for m in meters)})


def scanner_main(socket: str, conn: Connection, tokenizer_dir: str, max_batch: int) -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")  # as `warden scanner` sets it
    from bench.scanner_ipc import null_hf_runner
    from detectors.runtime.process import _loop_factory, serve
    from detectors.runtime.settings import ModelSettings, ScannerSettings

    runners: dict[str, Any] = {}
    meters: list[MeteredCore] = []
    specs = []
    for kind, task in TASKS.items():
        spec = ModelSettings(task=task, kind=kind, path=tokenizer_dir, device="cpu", max_batch=max_batch,
                             max_wait_ms=5, max_length=128, queue_size=65536)
        specs.append(spec)
        runners[task] = null_hf_runner(spec, Path(tokenizer_dir))
        meters += _meter(runners[task].tokenizing)
    try:  # as `warden scanner` loads them: the two models share one tokenizer
        from detectors.runtime.hf import share_tokenizers
    except ImportError:  # the runtime before issue 26 had no sharing
        pass
    else:
        share_tokenizers(r.tokenizing for r in runners.values())
    settings = ScannerSettings(socket=socket, models=specs)
    threading.Thread(target=_answer_stats, args=(conn, meters), name="bench-stats", daemon=True).start()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(settings, runners))


def tokenizer_floor_us(tokenizer_dir: Path, texts: list[str], repeats: int = 3) -> float:
    """One thread, one text at a time, truncated at 128: the least CPU these texts' ids can cost."""
    import copy

    from transformers import AutoTokenizer

    core = copy.deepcopy(AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True).backend_tokenizer)
    core.enable_truncation(128)
    core.no_padding()
    best = float("inf")
    for _ in range(repeats):
        began = time.thread_time()
        for text in texts:
            core.encode(text)
        best = min(best, time.thread_time() - began)
    return 1e6 * best / len(texts)


def _stats(conn: Connection) -> dict[str, Any]:
    conn.send("stats")
    reply: dict[str, Any] = conn.recv()
    return reply


def one_round(pool: ProcessPoolExecutor, pid: int, conn: Connection, socket: str, task: str, texts: list[str],
              args: argparse.Namespace, floor_us: float) -> dict[str, float]:
    from bench.scanner import client_job

    t0 = time.monotonic() + 0.5
    before, cpu0 = _stats(conn), process_cpu_seconds(pid)
    jobs = [{"address": f"unix://{socket}", "task": task, "texts": texts, "t0": t0, "seconds": args.seconds,
             "rate": None, "phase": 0.0, "offset": i * 7919, "op": "scan", "timeout_s": 60.0,
             "concurrency": args.callers // args.client_procs, "coalesce": True} for i in range(args.client_procs)]
    results = list(pool.map(client_job, jobs))
    after, cpu = _stats(conn), process_cpu_seconds(pid) - cpu0
    n = sum(len(r["lat"]) for r in results)
    if not n:
        raise RuntimeError(f"no scan completed ({sum(r['errors'] for r in results)} errors)")
    elapsed = max(r["done"] for r in results) - t0
    python = set(after["python"])
    spent = {tid: cpu_s - before["threads"].get(tid, 0.0) for tid, cpu_s in after["threads"].items()
             if tid != after["me"]}
    encode = after["encode_cpu_s"] - before["encode_cpu_s"]
    python_cpu = sum(v for tid, v in spent.items() if tid in python)
    native_cpu = sum(v for tid, v in spent.items() if tid not in python)
    tokenizer_us = 1e6 * (encode + native_cpu) / n
    return {"texts_per_s": round(n / elapsed, 1),
            "scanner_gil_us_per_text": round(1e6 * (python_cpu - encode) / n, 2),
            "scanner_cpu_us_per_text": round(1e6 * cpu / n, 2),
            "client_cpu_us_per_text": round(1e6 * sum(r["cpu_s"] for r in results) / n, 2),
            "tokenizer_cpu_ratio": round(tokenizer_us / floor_us, 3),
            "tokenizer_us_per_text": round(tokenizer_us, 2), "tokenizer_floor_us_per_text": round(floor_us, 2),
            "p50_ms": round(1e3 * sorted(x for r in results for x in r["lat"])[n // 2], 2),
            "errors": sum(r["errors"] for r in results), "texts": n}


def summarise(rounds: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {k: round(statistics.median(r[k] for r in rounds), 3) for k in rounds[0]}
    out["spread"] = {k: [min(r[k] for r in rounds), max(r[k] for r in rounds)] for k in FIELDS}
    out["rounds"] = rounds
    return out


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=False).stdout.strip()
    except OSError:
        return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--callers", type=int, default=1024)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=256)
    parser.add_argument("--only", default=",".join(CONFIGS))
    parser.add_argument("--label", default="", help="recorded in the JSON (e.g. before, after)")
    parser.add_argument("--json", type=Path, default=RESULTS / "scanner_null.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from bench import scanner_models as sm

    tokenizer_dir = sm.minilm_dir()  # bert-base-uncased's WordPiece: the bench classifier's tokenizer too
    # each model its own texts: a text one model tokenized is handed to the other once (shared tokenizer),
    # which is not what a single model's figures are about
    texts = {key: sm.make_texts(key.split("/")[1], 2048, seed=1 + CONFIGS.index(key) // 2) for key in CONFIGS}
    floors = {key: tokenizer_floor_us(tokenizer_dir, t) for key, t in texts.items()}
    ctx = get_context("spawn")
    socket = str(Path(tempfile.mkdtemp(prefix="warden-null-")) / "scanner.sock")
    parent_end, child_end = ctx.Pipe()
    server = ctx.Process(target=scanner_main, args=(socket, child_end, str(tokenizer_dir), args.max_batch),
                         daemon=True)
    server.start()
    while not os.path.exists(socket):
        time.sleep(0.05)
    load0 = os.getloadavg()
    results: dict[str, Any] = {}
    try:
        with ProcessPoolExecutor(args.client_procs, mp_context=ctx) as pool:
            from bench.scanner import _warm_worker

            list(pool.map(_warm_worker, range(args.client_procs)))  # a cold worker would miss its window
            for key in args.only.split(","):
                kind = key.split("/")[0]
                short = argparse.Namespace(**{**vars(args), "seconds": 1.5})
                one_round(pool, server.pid or 0, parent_end, socket, TASKS[kind], texts[key], short, floors[key])
                rounds = []
                for r in range(args.rounds):
                    rounds.append(one_round(pool, server.pid or 0, parent_end, socket, TASKS[kind], texts[key], args,
                                            floors[key]))
                    row = rounds[-1]
                    print(f"{key} round {r + 1}: " + ", ".join(f"{k} {row[k]}" for k in FIELDS), flush=True)
                results[key] = summarise(rounds)
    finally:
        server.terminate()
        server.join()
    print(f"\nnull model, {args.callers} callers in {args.client_procs} client processes, max_batch "
          f"{args.max_batch}, {os.cpu_count()} CPUs, load average {load0} -> {os.getloadavg()} (median of "
          f"{args.rounds} rounds of {args.seconds:g} s; [min, max])")
    for key, s in results.items():
        mix = key.split("/")[1]
        print(f"  {key:16}" + "  ".join(f"{k} {s[k]} {s['spread'][k]}" for k in FIELDS))
        checks = [(k, s[k] <= goal) for k, goal in TARGETS.items()]
        checks.append(("texts_per_s", s["texts_per_s"] >= THROUGHPUT_TARGETS[mix]))
        print("  " + " " * 16 + "  ".join(f"{'PASS' if ok else 'FAIL'} {k}" for k, ok in checks))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"label": args.label, "commit": _commit(), "cpus": os.cpu_count(),
                                     "load_average": [load0, os.getloadavg()],
                                     "settings": {k: str(v) for k, v in vars(args).items()},
                                     "targets": {**TARGETS, "texts_per_s": THROUGHPUT_TARGETS}, **results},
                                    indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
