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
import itertools
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detectors.runtime.graphs import StaticForward
from detectors.runtime.settings import ModelSettings

log = logging.getLogger("warden.scanner.models")
Batch = dict[str, torch.Tensor]
CHARS_PER_TOKEN = 8  # the cut keeps max_length x this many characters (then up to the next space)
PROBE = ["Hello, World! ünïcode 東京 tokens, " * 64, "a", "",
         " ".join(f"w{i} antidisestablishment-{i * 7}, état's" for i in range(400)), "x" * 3000 + " y " * 400]


class SharedTokens:
    """Token ids one runner made, for another runner with the same tokenizer and budget to take once.

    A text the proxy scans for toxicity and then embeds for drift is tokenized once. An entry is
    only handed to a *different* runner, and leaves when taken: this is not a cache of repeated
    texts (those are tokenized again), so it never changes what a single model costs.

    Each runner's offers go into its own plain dict, filled with one C-level `update` and emptied
    whole when full: no per-text Python on the offering side, which is every batch (a per-entry
    OrderedDict cost ~1.5 us a 128-token text, on the GIL), and one `pop` a text on the taking side.
    An entry dropped by the emptying costs one more tokenization, nothing else.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._made: dict[int, dict[str, Any]] = {}  # owner -> text -> ids

    def take(self, owner: int, texts: list[str]) -> list[Any]:
        with self._lock:
            stores = [store for maker, store in self._made.items() if maker != owner and store]
            found: list[Any] = [stores[0].pop(text, None) for text in texts] if stores else [None] * len(texts)
            for store in stores[1:]:  # a third model sharing the tokenizer
                found = [ids if ids is not None else store.pop(text, None)
                         for text, ids in zip(texts, found, strict=True)]
            return found

    def offer(self, owner: int, texts: list[str], ids: list[Any]) -> None:
        with self._lock:
            store = self._made.setdefault(owner, {})
            if len(store) + len(texts) > self.capacity:
                store.clear()
            store.update(zip(texts, ids, strict=True))


def share_tokenizers(runners: Iterable[object]) -> None:
    """Runners whose tokenizers encode alike (same fingerprint) get one `SharedTokens` between them."""
    groups: dict[str, list[Any]] = {}
    for runner in runners:
        if getattr(runner, "tokenizer_id", ""):
            groups.setdefault(runner.tokenizer_id, []).append(runner)  # type: ignore[attr-defined]
    for members in groups.values():
        if len(members) > 1:
            shared = SharedTokens()
            for runner in members:
                runner.shared_tokens = shared


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
        self.vocab_size = len(tokenizer)
        self._wants_token_types = "token_type_ids" in getattr(tokenizer, "model_input_names", [])
        self._rust = self._rust_tokenizer()
        self.cut_chars = self._cut_budget()
        self.tokenizer_id = self._fingerprint()
        self.shared_tokens: SharedTokens | None = None  # set by share_tokenizers when another model may use it
        self._static = (StaticForward(self._step, self.device, settings.max_batch, settings.max_length, self.pad_id,
                                      self._wants_token_types, capture=True)
                        if settings.cuda_graphs and self.device.type == "cuda" else None)

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

    def _cut_budget(self) -> int:
        """Characters kept before tokenizing (0: never cut), if cutting gives the full text's ids on a probe.

        Tokenizing an 8,000-word text to keep 128 tokens is 13-44x the work needed. A cut at a space
        is a word boundary for every whitespace-splitting pre-tokenizer, so the cut text's ids start
        like the full text's; `tokenize` still encodes the whole text when a cut one came out short.
        """
        if self._rust is None:
            return 0
        budget = self.settings.max_length * CHARS_PER_TOKEN
        full = self._encode(PROBE)
        self.cut_chars = budget
        if self.tokenize(PROBE) != full:
            log.warning("task %r: cutting long texts before tokenizing changes their ids; texts are tokenized whole",
                        self.task)
            return 0
        return budget

    def _fingerprint(self) -> str:
        if self._rust is None:
            return ""
        digest = hashlib.sha256(self._rust.to_str().encode())
        digest.update(f"{self.settings.max_length}/{self.cut_chars}".encode())
        return digest.hexdigest()[:16]

    def _encode(self, texts: list[str]) -> list[list[int]]:
        encode = getattr(self._rust, "encode_batch_fast", self._rust.encode_batch)  # fast: no offsets
        return [e.ids for e in encode(texts)]

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        if self._rust is None:
            return self._wrapper_ids(texts)
        shared = self.shared_tokens if getattr(self, "shared_tokens", None) else None
        found = shared.take(id(self), texts) if shared is not None else None
        todo = texts if found is None or found.count(None) == len(found) else [
            t for t, ids in zip(texts, found, strict=True) if ids is None]
        made = self._encode_cut(todo) if todo else []
        if shared is not None:
            shared.offer(id(self), todo, made)
        if found is None or todo is texts:
            return made
        rest = iter(made)
        return [ids if ids is not None else next(rest) for ids in found]

    def _encode_cut(self, texts: list[str]) -> list[list[int]]:
        """`_encode` of texts cut near the budget first; a cut that fell short of the budget (very
        long words) is encoded again whole, so the ids are always the full text's, truncated."""
        budget = getattr(self, "cut_chars", 0)
        if not budget or max(map(len, texts)) <= budget:
            return self._encode(texts)
        long = [i for i, text in enumerate(texts) if len(text) > budget]
        cut = list(texts)
        for i in long:
            cut[i] = _cut(texts[i], budget)
        made = self._encode(cut)
        full = self.settings.max_length
        short = [i for i in long if cut[i] is not texts[i] and len(made[i]) < full]
        for i, ids in zip(short, self._encode([texts[i] for i in short]) if short else [], strict=True):
            made[i] = ids
        return made

    def collate(self, ids: list[Any]) -> Batch:
        """Pad a length group to its longest member with whole-array operations, not a loop per text."""
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        width = int(lengths.max())
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
        if flat.size == width * len(ids):  # no padding (every row as long: truncated texts, one-width kinds)
            input_ids, mask = flat.reshape(len(ids), width), np.ones((len(ids), width), dtype=np.int64)
        else:
            filled = np.arange(width) < lengths[:, None]
            input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
            input_ids[filled] = flat
            mask = filled.astype(np.int64)
        batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}
        if self._wants_token_types:
            batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
        if self.device.type == "cuda" and self._static is None:
            batch = {k: v.pin_memory() for k, v in batch.items()}
        return batch

    def _step(self, inputs: Batch) -> torch.Tensor:
        """Model and head on device tensors, float32 out: the part a CUDA graph captures whole."""
        if self.output == "scores":
            logits: torch.Tensor = self.model(**inputs).logits.float()
            return logits.sigmoid() if self.settings.activation == "sigmoid" else logits.softmax(-1)
        hidden = self.model(**inputs).last_hidden_state.float()
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def forward(self, batch: Batch) -> np.ndarray[Any, Any]:
        if self._static is not None:
            return self._static(batch["input_ids"].numpy(), batch["attention_mask"].numpy())
        with torch.inference_mode():
            inputs = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            return np.asarray(self._step(inputs).cpu().numpy())

    def warm_up(self) -> None:
        """One pass per padded width class (every bucket's graph with cuda_graphs), so no request pays lazy init."""
        if self._static is not None:
            self._static.warm_up()
        for width in (8, self.settings.max_length):
            self.forward(self.collate([[self.pad_id] * width] * 2))

    def memory_bytes(self) -> int:
        return int(torch.cuda.memory_allocated(self.device)) if self.device.type == "cuda" else 0


def _cut(text: str, budget: int) -> str:
    end = text.find(" ", budget)
    return text if end < 0 else text[:end]


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
