"""The scanner process's own ceiling: single-text scans/s when the model costs nothing.

A benchmark, not a test. The real scanner server (`detectors.runtime.process.serve`, its batcher,
socket and protocol) runs in its own process with a null model whose forward pass returns zeros,
so what is left is what every scan pays around the model: framing, validation, futures, replies.
Proxy-like callers (ScannerClient, one text per call, in separate processes) drive it closed-loop,
with the client's coalescing off (one frame per call) and on (one frame per loop turn), in the
same run, alternated over rounds. On the H200 run of 2026-11-28 the end-to-end runtime stopped
near 4,500 texts/s for both models while the classifier alone did 16,900: this is that ceiling.

    .venv/bin/python -m bench.scanner_ipc [--rounds 3] [--seconds 4] [--concurrency 256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import RESULTS


class NullRunner:
    """A model that takes no time: zeros of the right shape for whatever `tokenizing` makes of the texts.

    Without `tokenizing` a text is one id per word (this module's IPC ceiling); with it (an HF runner,
    see `null_hf_runner`) the real tokenizer and padding run, and only the forward pass is a stub.
    """

    def __init__(self, settings: Any, tokenizing: Any = None) -> None:
        self.settings, self.task, self.kind = settings, settings.task, settings.kind
        self.tokenizing = tokenizing
        embedder = tokenizing is not None and tokenizing.output == "vectors"
        self.output = "vectors" if embedder else "scores"
        self.labels = [] if embedder else [f"l{i}" for i in range(6)]
        self.dim = tokenizing.dim if embedder else None
        self.device, self.dtype, self.version = "cpu", "float32", "null"
        self._width = self.dim or len(self.labels)

    def __getattr__(self, name: str) -> Any:
        """Whatever else the runtime asks of a runner (shared tokenization, token budgets) is the real one's."""
        if name == "tokenizing" or self.tokenizing is None:
            raise AttributeError(name)
        return getattr(self.tokenizing, name)

    def tokenize(self, texts: list[str]) -> Any:
        if self.tokenizing is not None:
            return self.tokenizing.tokenize(texts)
        return [[1] * min(len(t.split()) + 2, 128) for t in texts]

    def collate(self, ids: Any) -> Any:
        return ids if self.tokenizing is None else self.tokenizing.collate(ids)

    def forward(self, batch: Any) -> Any:
        rows = len(batch["input_ids"]) if isinstance(batch, dict) else len(batch)
        return np.zeros((rows, self._width), np.float32)

    def warm_up(self) -> None:
        """Nothing to warm: the scanner calls it before serving, as it does for a real model."""

    def memory_bytes(self) -> int:
        return 0  # no weights anywhere: nothing for the scanner's memory gauge to report


def null_hf_runner(settings: Any, tokenizer_dir: Path, labels: int = 6, dim: int = 384) -> NullRunner:
    """The runtime's own HF runner (tokenizer, truncation, padding) around a model with no weights."""
    from types import SimpleNamespace

    import torch
    from transformers import AutoTokenizer

    from detectors.runtime.hf import HFRunner

    class Weightless(torch.nn.Module):
        config = SimpleNamespace(id2label={i: f"l{i}" for i in range(labels)}, hidden_size=dim)

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    return NullRunner(settings, HFRunner(Weightless(), tokenizer, settings, version="null"))


def scanner_main(socket: str) -> None:
    from detectors.runtime.process import _loop_factory, serve
    from detectors.runtime.settings import ModelSettings, ScannerSettings

    model = ModelSettings(task="toxicity", kind="classifier", path="/null", device="cpu", max_batch=256,
                          max_wait_ms=5, queue_size=65536)
    settings = ScannerSettings(socket=socket, models=[model])
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(settings, {"toxicity": NullRunner(model)}))


def one_load(pool: ProcessPoolExecutor, procs: int, pid: int, socket: str, args: argparse.Namespace,
             coalesce: bool) -> dict[str, float]:
    from bench import scanner_models as sm
    from bench.scanner import client_job

    texts = [f"a short prompt to scan, number {i}" for i in range(1000)]
    t0 = time.monotonic() + 0.5
    cpu0 = sm.proc_cpu_s(pid)
    jobs = [{"address": f"unix://{socket}", "task": "toxicity", "texts": texts, "t0": t0, "seconds": args.seconds,
             "rate": None, "phase": 0.0, "offset": i * 7919, "op": "scan", "timeout_s": 60.0,
             "concurrency": args.concurrency // procs, "coalesce": coalesce} for i in range(procs)]
    results = list(pool.map(client_job, jobs))
    n = sum(len(r["lat"]) for r in results)
    elapsed = max(r["done"] for r in results) - t0
    lat = sorted(x for r in results for x in r["lat"])
    scanner_cpu = sm.proc_cpu_s(pid) - cpu0
    return {"scans_per_s": round(n / elapsed, 1), "scanner_us_per_scan": round(1e6 * scanner_cpu / n, 1),
            "client_us_per_scan": round(1e6 * sum(r["cpu_s"] for r in results) / n, 1),
            "p50_ms": round(1e3 * lat[len(lat) // 2], 2), "errors": sum(r["errors"] for r in results)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--client-procs", type=int, default=max(1, min(8, (os.cpu_count() or 2) // 2)))
    parser.add_argument("--json", type=Path, default=RESULTS / "scanner_ipc.json")
    args = parser.parse_args()
    ctx = get_context("spawn")
    socket = str(Path(tempfile.mkdtemp(prefix="warden-ipc-")) / "scanner.sock")
    server = ctx.Process(target=scanner_main, args=(socket,), daemon=True)
    server.start()
    while not os.path.exists(socket):
        time.sleep(0.05)
    rows: dict[str, list[dict[str, float]]] = {"one frame per call": [], "coalesced": []}
    try:
        with ProcessPoolExecutor(args.client_procs, mp_context=ctx) as pool:
            one_load(pool, args.client_procs, server.pid or 0, socket, args, True)  # warm-up
            for r in range(args.rounds):
                for name, coalesce in (("one frame per call", False), ("coalesced", True)):
                    rows[name].append(one_load(pool, args.client_procs, server.pid or 0, socket, args, coalesce))
                print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]['scans_per_s']:,.0f}/s" for k, v in rows.items()),
                      flush=True)
    finally:
        server.terminate()
        server.join()
    print(f"\nnull model, c={args.concurrency}, {args.client_procs} client processes, {os.cpu_count()} CPUs "
          f"(median of {args.rounds} rounds)")
    summary = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in rows.items()}
    for name, s in summary.items():
        print(f"  {name:20} {s['scans_per_s']:>10,.0f} scans/s  scanner {s['scanner_us_per_scan']:>6.1f} us/scan  "
              f"client {s['client_us_per_scan']:>6.1f} us/scan  p50 {s['p50_ms']:.1f} ms  errors {s['errors']:.0f}")
    ratios = [c["scans_per_s"] / o["scans_per_s"] for c, o in zip(rows["coalesced"], rows["one frame per call"],
                                                                   strict=True)]
    print(f"  coalesced / one frame per call: {statistics.median(ratios):.2f}x (rounds "
          f"{[round(x, 2) for x in ratios]})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"cpus": os.cpu_count(), "settings": {k: str(v) for k, v in vars(args).items()},
                                     "rounds": rows, "summary": summary, "ratio_median": statistics.median(ratios)},
                                    indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
