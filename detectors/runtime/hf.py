"""transformers runners, and the device choice every torch runner shares: the bottom of the model kinds.

Tokenise on one thread, run batches on another, on CUDA in bf16 or CPU in fp32.

A runner splits inference into `tokenize` (unpadded ids, CPU, parallel-safe), `collate` (pad a
length group to its own longest member, not to the model maximum) and `forward` (one batch on
the device under `inference_mode`). The batcher overlaps tokenising batch N+1 with the forward
pass of batch N.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detectors.runtime.settings import ModelSettings

log = logging.getLogger("warden.scanner.models")
Batch = dict[str, torch.Tensor]


def pick_device(wanted: str) -> torch.device:
    """`auto` prefers CUDA; an explicit `cuda` without one fails at load rather than running slowly on CPU."""
    if wanted == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA device")
    if wanted in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


class HFRunner:
    """A transformers encoder as a classifier (per-label scores) or an embedder (mean-pooled, unit length)."""

    def __init__(self, model: Any, tokenizer: Any, settings: ModelSettings, version: str = "unversioned") -> None:
        self.settings = settings
        self.task = settings.task
        self.kind = settings.kind
        self.output = "vectors" if settings.kind == "embedder" else "scores"
        self.version = version
        self.device = pick_device(settings.device)
        self.tokenizer = tokenizer
        model.eval()
        if self.device.type == "cuda":
            model = model.to(self.device, dtype=torch.bfloat16)
            self.dtype = "bfloat16"
        elif settings.quantize_int8:
            quantize = torch.ao.quantization.quantize_dynamic
            model = quantize(model, {torch.nn.Linear}, dtype=torch.qint8)  # type: ignore[no-untyped-call]
            self.dtype = "int8-dynamic"
        else:
            model = model.float()
            self.dtype = "float32"
        self.model = model
        config = getattr(model, "config", None)
        id2label = getattr(config, "id2label", None) or {}
        self.labels = [str(id2label[i]) for i in sorted(id2label)] if self.output == "scores" else []
        self.dim = int(getattr(config, "hidden_size", 0)) if self.output == "vectors" else None
        self.pad_id = int(tokenizer.pad_token_id or 0)
        self._wants_token_types = "token_type_ids" in getattr(tokenizer, "model_input_names", [])
        self._rust = self._rust_tokenizer()

    def _rust_tokenizer(self) -> Any:
        """The fast tokenizer's Rust core with truncation set, when it encodes exactly as the wrapper does.

        transformers' wrapper costs more Python per batch than the encoding itself (about 1.4x on
        128-token texts, measured) and holds the GIL while it builds its outputs, which the device
        thread needs; the core releases it and encodes a batch on several threads. A probe checks
        that both give the same ids, else the wrapper stays.
        """
        core = getattr(self.tokenizer, "backend_tokenizer", None) if getattr(self.tokenizer, "is_fast", False) else None
        if core is None:
            return None
        core = copy.deepcopy(core)  # its own truncation: the wrapper's object is left as loaded
        core.enable_truncation(self.settings.max_length)
        core.no_padding()
        probe = ["Hello, World! ünïcode 東京 tokens, " * 64, "a", ""]
        if [e.ids for e in core.encode_batch(probe)] != self._wrapper_ids(probe):
            log.warning("task %r: the Rust tokenizer disagrees with transformers' on a probe; using the slower wrapper",
                        self.task)
            return None
        return core

    def _wrapper_ids(self, texts: list[str]) -> list[list[int]]:
        encoded = self.tokenizer(texts, truncation=True, max_length=self.settings.max_length)
        return [list(ids) for ids in encoded["input_ids"]]

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        if self._rust is None:
            return self._wrapper_ids(texts)
        encode = getattr(self._rust, "encode_batch_fast", self._rust.encode_batch)  # fast: no offsets
        return [e.ids for e in encode(texts)]

    def collate(self, ids: list[list[int]]) -> Batch:
        width = max(len(row) for row in ids)
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}
        if self._wants_token_types:
            batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
        if self.device.type == "cuda":
            batch = {k: v.pin_memory() for k, v in batch.items()}
        return batch

    def forward(self, batch: Batch) -> np.ndarray[Any, Any]:
        with torch.inference_mode():
            inputs = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            if self.output == "scores":
                logits = self.model(**inputs).logits.float()
                scores = logits.sigmoid() if self.settings.activation == "sigmoid" else logits.softmax(-1)
                return np.asarray(scores.cpu().numpy())
            hidden = self.model(**inputs).last_hidden_state.float()
            mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()

    def warm_up(self) -> None:
        """One pass per padded width class, so the first real request pays no lazy init."""
        for width in (8, self.settings.max_length):
            self.forward(self.collate([[self.pad_id] * width] * 2))

    def memory_bytes(self) -> int:
        return int(torch.cuda.memory_allocated(self.device)) if self.device.type == "cuda" else 0


def _dir_version(path: Path) -> str:
    """Content hash of the model's config and weights names: lineage for every finding it makes."""
    digest = hashlib.sha256()
    for item in sorted(path.iterdir()):
        if item.is_file() and item.suffix in (".json", ".safetensors", ".bin", ".txt"):
            digest.update(item.name.encode())
            digest.update(str(item.stat().st_size).encode())
    return digest.hexdigest()[:12]


def load_hf_runner(settings: ModelSettings) -> HFRunner:
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    path = Path(settings.path)
    if not path.is_dir():
        raise FileNotFoundError(f"model for task {settings.task!r}: {path} is not a directory")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    loader = AutoModelForSequenceClassification if settings.kind == "classifier" else AutoModel
    model = loader.from_pretrained(path, local_files_only=True)
    runner = HFRunner(model, tokenizer, settings, version=_dir_version(path))
    log.info("loaded %s model for task %r from %s on %s (%s)", settings.kind, settings.task, path,
             runner.device, runner.dtype)
    return runner
