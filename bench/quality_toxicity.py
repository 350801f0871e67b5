"""Toxicity quality on two labelled sets, before and after in one run.

    .venv/bin/python -m bench.quality_toxicity                  # both sets, under a minute on 2 cores
    .venv/bin/python -m bench.quality_toxicity --set holdout

`main` (bench/data/toxicity_set.jsonl) is the set the threat and abuse rules were developed on;
`holdout` (bench/data/toxicity_holdout.jsonl) was written before the abuse rules and is never
tuned on, so its rates are the ones to expect on text nobody here has seen.

The model is the default offline one (`toxic_bilstm`), run in this process (the scanner process
would give the same scores: tests/detectors/test_toxicity.py checks it). Each text goes through
the real `DetectorChain`, `ScannerDetector` and `PolicyEngine` with the toxicity detector and rules
of the two default configs: examples/warden.yaml (`threat` >= 0.7 blocks, any label >= 0.8 flags)
and `warden up`'s embedded config (`toxicity` >= 0.8 blocks). A text is caught when its verdict is
more than `allow`. "before" switches off what issue 25 added, through parameters only: the chain's
normalised view, windows, the classifier's view (leetspeak, spaced letters), the threat rules,
clause windows and the abuse rules; the intermediate rows add them one at a time.

Groups: `toxic: true` groups report the share caught; `toxic: false` groups (benign, hard
negatives) the share wrongly caught; self-harm (`toxic: null`) is reported only. `padded` pairs
each padded text with its clear source: padded = clear when both rates agree.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from bench.harness import RESULTS, ROOT
from detectors.builtin_types import ScannerOptions
from detectors.runtime.client import ScanResult
from detectors.runtime.protocol import TaskInfo
from detectors.runtime.settings import ModelSettings
from detectors.scanned import ScannerDetector, Shaping
from proxy.policy.chain import ChainEntry, DetectorChain
from proxy.policy.engine import Action, PolicyEngine, Scope
from proxy.policy.metrics import PolicyMetrics
from proxy.policy.settings import PolicySettings

SETS = {"main": ROOT / "bench" / "data" / "toxicity_set.jsonl",
        "holdout": ROOT / "bench" / "data" / "toxicity_holdout.jsonl"}
STEPS: tuple[tuple[str, bool, Shaping], ...] = (
    ("before", False, Shaping(0, False, False, clause_words=0)),
    ("+ normalised view", True, Shaping(0, False, False, clause_words=0)),
    ("+ windows", True, Shaping(64, False, False, clause_words=0)),
    ("+ leetspeak/spacing", True, Shaping(64, True, False, clause_words=0)),
    ("+ threat rules", True, Shaping(64, True, True, abuse_rules=False, clause_words=0)),
    ("+ clause windows", True, Shaping(64, True, True, abuse_rules=False)),
    ("after (+ abuse rules)", True, Shaping(64, True, True, abuse_rules=True)),
)


class InProcessScanner:
    """The slice of ScannerClient a ScannerDetector uses, answered by a runner in this process."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner

    async def ping(self) -> dict[str, TaskInfo]:
        r = self.runner
        return {r.task: TaskInfo(kind=r.kind, output="scores", labels=r.labels, device=str(r.device),
                                 dtype=r.dtype, model_version=r.version)}

    async def scan(self, task: str, texts: list[str], priority: str = "request",
                   timeout_s: float | None = None) -> ScanResult:
        scores = self.runner.forward(self.runner.collate(self.runner.tokenize(texts)))
        return ScanResult(labels=list(self.runner.labels), scores=np.asarray(scores))


def configs() -> dict[str, tuple[ScannerOptions, PolicySettings]]:
    """The toxicity detector and the rules on it, from examples/warden.yaml and `warden up`'s config."""
    from proxy.embedded import embedded_settings
    from proxy.settings import load_settings

    out = {}
    with tempfile.TemporaryDirectory() as state:
        sources = {"examples/warden.yaml": load_settings(ROOT / "examples" / "warden.yaml"),
                   "warden up": embedded_settings("http://127.0.0.1:9", 0, "127.0.0.1", Path(state))}
    for name, settings in sources.items():
        detector = next(d for d in settings.detectors if isinstance(d, ScannerOptions) and d.task == "toxicity")
        rules = [r for r in settings.policy.rules if r.detector in (detector.name, "*")]
        out[name] = (detector, PolicySettings(rules=rules))
    return out


async def verdicts(rows: list[dict[str, Any]], scanner: InProcessScanner, options: ScannerOptions,
                   policy: PolicySettings, normalized: bool, shaping: Shaping) -> list[bool]:
    detector = ScannerDetector(options.name, options.task, scanner, frozenset(options.directions),  # type: ignore[arg-type]
                               report_min=options.report_min, shaping=shaping)
    await detector.describe()
    chain = DetectorChain([ChainEntry(detector, options)], PolicyMetrics(CollectorRegistry()), normalized=normalized)
    engine = PolicyEngine(policy)
    caught = []
    for at in range(0, len(rows), 32):
        texts = [r["text"] for r in rows[at:at + 32]]
        findings = await chain.scan(texts, "request")
        caught += [engine.decide([f], "request", Scope()).action > Action.ALLOW for f in findings]
    return caught


def rates(rows: list[dict[str, Any]], caught: list[bool]) -> dict[str, Any]:
    groups: dict[str, list[bool]] = {}
    for row, hit in zip(rows, caught, strict=True):
        groups.setdefault(row["group"], []).append(hit)
    out: dict[str, Any] = {g: round(sum(h) / len(h), 3) for g, h in groups.items()}
    clear = [h for r, h in zip(rows, caught, strict=True) if r["group"] in ("insult", "identity", "sexual")]
    benign = [h for r, h in zip(rows, caught, strict=True) if r["toxic"] is False]
    out["clear_toxic"] = round(sum(clear) / len(clear), 3)
    out["false_positive"] = round(sum(benign) / len(benign), 3)
    by_text = {r["text"]: h for r, h in zip(rows, caught, strict=True)}
    sources = [by_text[r["source"]] for r in rows if r["group"] == "padded"]
    out["padded_sources"] = round(sum(sources) / len(sources), 3)
    return out


async def main(threads: int, sets: list[str]) -> dict[str, Any]:
    import torch

    from detectors.toxicity import load_bilstm_runner

    torch.set_num_threads(threads)
    scanner = InProcessScanner(load_bilstm_runner(ModelSettings(task="toxicity", kind="toxic_bilstm", device="cpu")))
    out: dict[str, Any] = {"model": "toxic_bilstm", "sets": {}}
    for name in sets:
        print(f"\n=== set {name}: {SETS[name].relative_to(ROOT)}")
        out["sets"][name] = await one_set(SETS[name], scanner)
    return out


async def one_set(data: Path, scanner: InProcessScanner) -> dict[str, Any]:
    with data.open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    results: dict[str, Any] = {"set": str(data.relative_to(ROOT)), "sentences": len(rows), "configs": {}}
    for config, (options, policy) in configs().items():
        results["configs"][config] = {}
        print(f"\n{config}: detector report_min {options.report_min}; rules: "
              + "; ".join(f"{r.label} >= {r.threshold} {r.action}" for r in policy.rules))
        header = ["step", "insult", "threat", "identity", "sexual", "obfusc", "padded", "(src)", "clear", "FP",
                  "hardneg", "selfharm", "s"]
        print(" ".join(f"{h:>9}" for h in header))
        for step, normalized, shaping in STEPS:
            started = time.perf_counter()
            caught = await verdicts(rows, scanner, options, policy, normalized, shaping)
            r = rates(rows, caught)
            r["seconds"] = round(time.perf_counter() - started, 2)
            results["configs"][config][step] = r
            cells = [r["insult"], r["threat"], r["identity"], r["sexual"], r["obfuscated"], r["padded"],
                     r["padded_sources"], r["clear_toxic"], r["false_positive"], r["hard_negative"],
                     r["self_harm"], r["seconds"]]
            print(f"{step[:9]:>9} " + " ".join(f"{c:>9}" for c in cells))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", choices=[*SETS, "both"], default="both",
                        help="main: the tuning set; holdout: written before the abuse rules, never tuned on")
    args = parser.parse_args()
    out = asyncio.run(main(args.threads, list(SETS) if args.set == "both" else [args.set]))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quality_toxicity.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwritten to {RESULTS / 'quality_toxicity.json'}")
