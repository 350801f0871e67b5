"""Time per drift window: 1,000 reference × 1,000 current embeddings of 384 dimensions, 200 permutations.

Targets (issue 6): ≤ 200 ms per window on 2 CPU cores, ≤ 20 ms on a GPU. Every statistic runs,
as the proxy's defaults run them (MMD² and centroid with permutations, the domain classifier
with PCA to 32 and 5 folds, per-dimension KS with Benjamini-Hochberg), on unit-length vectors
like MiniLM's. The CPU path is timed with 1 BLAS thread (the proxy's default, leaving a core to
the event loop) and with 2; the torch path runs on CUDA when `torch.cuda.is_available()`, and
is reported as not measured otherwise. The same torch code also runs on the CPU, a check that
it runs (no target: on a CPU the numpy path is the one to use). Median of `--rounds` windows
after one warm-up; under each row, the median time of each stage (`Comparison.timings`), so a
GPU run shows what is left where.

    .venv/bin/python -m bench.drift [--rounds 7] [--json bench/results/drift.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from drift.compare import Sample, compare
from drift.config import StatsConfig

TARGET_CPU_MS, TARGET_GPU_MS = 200.0, 20.0
STAGES = (("permutation", "permutation tests"), ("classifier", "classifier"), ("ks", "KS"),
          ("prepare", "upload/projection"), ("rest", "rest (thread limits, BH, scalars)"))


def windows(seed: int = 0) -> tuple[Sample, Sample]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1000, 384)).astype(np.float32)
    y = rng.standard_normal((1000, 384)).astype(np.float32) + 0.02
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return Sample(x), Sample(y)


def time_windows(config: StatsConfig, rounds: int, torch_device: str | None = None) -> dict[str, Any]:
    reference, current = windows()
    compare(reference, current, config, seed=0, torch_device=torch_device)  # warm-up: imports, buffers, CUDA context
    times: list[float] = []
    stages: dict[str, list[float]] = {}
    for i in range(rounds):
        started = time.perf_counter()
        result = compare(reference, current, config, seed=i, torch_device=torch_device)
        times.append((time.perf_counter() - started) * 1e3)
        for stage, seconds in result.timings.items():
            stages.setdefault(stage, []).append(seconds * 1e3)
        stages.setdefault("rest", []).append(times[-1] - sum(result.timings.values()) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
            "stages_ms": {stage: statistics.median(values) for stage, values in stages.items()}}


def print_stages(timing: dict[str, Any]) -> None:
    stages = timing["stages_ms"]
    parts = [f"{label} {stages[key]:.1f}" for key, label in STAGES if key in stages]
    print(f"  by stage (median ms): {', '.join(parts)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", default="bench/results/drift.json")
    args = parser.parse_args()
    base = StatsConfig(permutations=200)
    results: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "shape": "1000 x 1000 x 384, 200 permutations", "runs": {},
    }
    runs: dict[str, object] = {}
    for threads in (1, 2):
        timing = time_windows(replace(base, threads=threads), args.rounds)
        ratio = timing["median_ms"] / TARGET_CPU_MS
        verdict = "PASS" if ratio <= 1 else "FAIL"
        runs[f"cpu_{threads}_thread"] = {**timing, "target_ms": TARGET_CPU_MS, "ratio_to_target": ratio,
                                         "verdict": verdict}
        print(f"CPU, {threads} BLAS thread(s): {timing['median_ms']:.1f} ms per window "
              f"(min {timing['min_ms']:.1f}, max {timing['max_ms']:.1f}); {ratio:.2f}x the {TARGET_CPU_MS:.0f} ms "
              f"target: {verdict}")
        print_stages(timing)
    from drift.torch_kernel import cuda_available

    timing = time_windows(replace(base, threads=None), args.rounds, torch_device="cpu")
    runs["torch_cpu"] = {**timing, "verdict": "check only", "why": "the torch code on the CPU; no target"}
    print(f"torch on CPU (check that the torch path runs; no target): {timing['median_ms']:.1f} ms per window "
          f"(min {timing['min_ms']:.1f}, max {timing['max_ms']:.1f})")
    print_stages(timing)

    if cuda_available():
        timing = time_windows(replace(base, device="cuda", threads=None), args.rounds)
        ratio = timing["median_ms"] / TARGET_GPU_MS
        runs["cuda"] = {**timing, "target_ms": TARGET_GPU_MS, "ratio_to_target": ratio,
                        "verdict": "PASS" if ratio <= 1 else "FAIL"}
        print(f"CUDA: {timing['median_ms']:.1f} ms per window; {ratio:.2f}x the {TARGET_GPU_MS:.0f} ms target")
        print_stages(timing)
    else:
        runs["cuda"] = {"verdict": "not measured", "why": "no CUDA device on this machine"}
        print(f"CUDA: not measured (no GPU here); the target is {TARGET_GPU_MS:.0f} ms per window")
    results["runs"] = runs
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
