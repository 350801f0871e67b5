"""What encryption at rest costs each store: rows (or entries) per second with and without the sealer.

    .venv/bin/python -m bench.encryption [--rounds 5] [--items 1500] [--json out.json]

Four workloads, each run plain and sealed in turn within every round (so a noisy moment of this
shared machine hits both), the same process and data for both:

- `review_add`: `SQLiteStore.add` of one item per call, as the review service writes them
  (prompt, output, raw output ~1 KiB each, findings), WAL on a temporary file;
- `spool_append`: 500-row `review_samples` batches encoded and appended to the telemetry spool
  (each append fsynced, as in production), rows/s;
- `cache_frame`: a 4 KiB and a 256 KiB cache answer framed for Redis and read back (no Redis:
  the frame and the seal are what differ), entries/s;
- `drift_rows`: drift reservoir rows of 384 floats, built for ClickHouse, rows/s.

Prints the median rows/s of each mode, the spread (min-max over rounds) and the sealed/plain ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np

from bench.harness import machine
from drift import WindowResult
from proxy.cache.redis_store import decode, encode
from proxy.cache.store import Entry as CacheEntry
from proxy.driftwatch.sink import sample_rows
from proxy.exchange import FindingRecord
from proxy.review.sqlite_store import SQLiteStore
from proxy.review.store import Item
from proxy.sealing import Sealer
from proxy.telemetry.spool import Entry, Spool

TEXT = ("The quarterly numbers look fine; my colleague Jane Doe (jane@example.com) asked about the "
        "contract renewal and the deadline of 14 March. ") * 8  # ~1 KiB


def review_add(sealer: Sealer | None, items: int) -> float:
    async def run() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            store = SQLiteStore(str(Path(tmp) / "review.sqlite3"), sealer)
            await store.open()
            try:
                finding = (FindingRecord("response", "pii", "email", 0.9, "redact", "matched an e-mail address"),)
                started = time.perf_counter()
                for n in range(items):
                    item = Item(f"i{n}", 1.0, "r", "t", "m", "/v1/chat/completions", "b", "v", "flagged", 1.0,
                                "redact", TEXT, TEXT, findings=finding)
                    await store.add(item, TEXT)
                return items / (time.perf_counter() - started)
            finally:
                await store.close()

    return asyncio.run(run())


def spool_append(sealer: Sealer | None, items: int) -> float:
    batches = max(4, items // 250)
    rows = 500
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp) / "spool", max_bytes=1 << 34, sealer=sealer)
        try:
            started = time.perf_counter()
            for n in range(batches):
                entry = Entry(f"b{n}", "review_samples", ["sample_id", "prompt", "output"],
                              [[f"s{i}" for i in range(rows)], [TEXT] * rows, [TEXT] * rows])
                spool.append(spool.encode(entry))
            return batches * rows / (time.perf_counter() - started)
        finally:
            spool.close()


def cache_frame(sealer: Sealer | None, items: int, size: int) -> float:
    chunks = [os.urandom(1024).hex().encode()[:1024] for _ in range(size // 1024)]
    entry = CacheEntry.of(200, "text/event-stream", chunks, time.time())
    count = max(50, items * 4096 // size)
    started = time.perf_counter()
    for n in range(count):
        key = f"k{n}"
        frame = encode(entry)
        stored = sealer.seal(frame, key.encode()) if sealer is not None else frame
        back = sealer.open(stored, key.encode()) if sealer is not None else stored
        assert decode(back) is not None
    return count / (time.perf_counter() - started)


def drift_rows(sealer: Sealer | None, items: int) -> float:
    vectors = np.random.default_rng(0).standard_normal((32, 384)).astype(np.float32)
    job = SimpleNamespace(key=SimpleNamespace(model="m", stream="chat/prompt"), index=1, window_start=1.0,
                          window_end=2.0, reference=SimpleNamespace(id="first"), samples=vectors)
    result = cast(WindowResult, SimpleNamespace(job=job))
    windows = max(20, items // 32)
    started = time.perf_counter()
    for _ in range(windows):
        sample_rows(result, sealer)
    return windows * 32 / (time.perf_counter() - started)


WORKLOADS: dict[str, Callable[[Sealer | None, int], float]] = {
    "review_add": review_add,
    "spool_append": spool_append,
    "cache_frame_4k": lambda s, n: cache_frame(s, n, 4096),
    "cache_frame_256k": lambda s, n: cache_frame(s, n, 256 << 10),
    "drift_rows": drift_rows,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--json", help="write the results here as JSON")
    args = parser.parse_args()
    sealer = Sealer([os.urandom(32)])
    results: dict[str, dict[str, list[float]]] = {w: {"plain": [], "sealed": []} for w in WORKLOADS}
    for number in range(1, args.rounds + 1):
        for name, run in WORKLOADS.items():
            for mode, which in (("plain", None), ("sealed", sealer)):
                rate = run(which, args.items)
                results[name][mode].append(rate)
                print(f"round {number} {name:17s} {mode:6s} {rate:12,.0f}/s", flush=True)
    report: dict[str, Any] = {"machine": machine(), "rounds": args.rounds, "items": args.items, "workloads": {}}
    print(f"\n{'workload':17s} {'plain /s (min-max)':>32s} {'sealed /s (min-max)':>32s} {'sealed/plain':>12s}")
    for name, modes in results.items():
        plain, sealed = statistics.median(modes["plain"]), statistics.median(modes["sealed"])
        spread = {m: (min(v), max(v)) for m, v in modes.items()}
        print(f"{name:17s} {plain:11,.0f} ({spread['plain'][0]:,.0f}-{spread['plain'][1]:,.0f})"
              f" {sealed:11,.0f} ({spread['sealed'][0]:,.0f}-{spread['sealed'][1]:,.0f}) {sealed / plain:12.2f}")
        report["workloads"][name] = {"plain_median": plain, "sealed_median": sealed, "ratio": sealed / plain,
                                     "plain": modes["plain"], "sealed": modes["sealed"]}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
