"""Toxicity models for the scanner: detoxify checkpoints, and the BiLSTM that works out of the box.

Both loaders return scanner runners (see detectors/runtime/runner.py `Runner`) with per-label
sigmoid scores under detoxify's label names, so policies written against one model work with
the other:

  * `kind: toxic_bilstm` (the default that needs no download): the Jigsaw-trained Keras BiLSTM
    shipped in the `toxic-comment-classifier` wheel, ported to torch (detectors/toxic_bilstm.py).
    Install with `pip install --no-deps toxic-comment-classifier h5py` (the wheel declares
    tensorflow, which the port does not need). `path` empty = the installed wheel's files.
  * `kind: detoxify`: a detoxify checkpoint file in `path`. Its model and tokenizer are built by
    detoxify's own code and run by the runtime's `HFRunner` (micro-batches, length buckets, bf16
    on CUDA), instead of detoxify's fp32 one-call-per-request `predict`.

Fetching detoxify's named checkpoints (original, unbiased, multilingual) needs GitHub and the
Hugging Face hub, so it happens at image build time, never at run time; docs/scanner.md
("Toxicity models") has the build stage. The stage stores, per model, the checkpoint re-saved
as plain `{config, state_dict}` with `model_type` pointing at a local directory holding the HF
config and tokenizer; `options.hf_config_dir` may name that directory instead.

A checkpoint is a pickle. It is read with `torch.load(weights_only=True)`, which refuses
anything but tensors and plain containers; `options.trust_pickle: true` lifts that for a file
you trust (detoxify itself always loads with `weights_only=False`).
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from detectors.runtime.settings import ModelSettings

if TYPE_CHECKING:  # torch-heavy: imported by the loaders, so LABELS is importable without torch
    from detectors.runtime.hf import HFRunner
    from detectors.toxic_bilstm import BiLSTMRunner

log = logging.getLogger("warden.scanner.toxicity")
LABELS = ("toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack")
# detoxify's "standardise class names between models": Jigsaw 2018 names -> the later datasets' names
JIGSAW_TO_DETOXIFY = MappingProxyType({"toxic": "toxicity", "severe_toxic": "severe_toxicity",
                                       "identity_hate": "identity_attack"})


def detoxify_labels(names: list[str] | tuple[str, ...]) -> list[str]:
    return [JIGSAW_TO_DETOXIFY.get(name, name) for name in names]


def read_detoxify_checkpoint(path: Path, trust_pickle: bool = False) -> dict[str, Any]:
    """The checkpoint dict, checked for what detoxify needs; refuses pickled code unless trusted."""
    import torch

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path} holds more than tensors and plain containers, so it was not unpickled; "
                         "re-save it as {config, state_dict} or set options.trust_pickle: true if you trust "
                         f"the file ({exc})") from exc
    if not isinstance(loaded, dict) or "config" not in loaded or "state_dict" not in loaded:
        raise ValueError(f"{path} is not a detoxify checkpoint: it needs 'config' and 'state_dict'")
    return loaded


def _file_version(path: Path) -> str:
    """Content hash of the checkpoint: the lineage recorded with every finding."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()[:12]


def load_detoxify_runner(settings: ModelSettings) -> HFRunner:
    """Build the model and tokenizer with detoxify's `get_model_and_tokenizer`, run them in `HFRunner`.

    options: `hf_config_dir` (a local directory with the HF config and tokenizer, for a checkpoint
    whose `model_type` is a hub name, as in detoxify's released ones), `trust_pickle`.
    """
    from detoxify.detoxify import get_model_and_tokenizer  # type: ignore[import-untyped]  # no type hints

    from detectors.runtime.hf import HFRunner

    if settings.activation != "sigmoid":
        raise ValueError(f"task {settings.task!r}: detoxify models are trained with per-label sigmoid")
    path = Path(settings.path)
    if not path.is_file():
        raise FileNotFoundError(f"detoxify checkpoint for task {settings.task!r}: {path} is not a file")
    loaded = read_detoxify_checkpoint(path, trust_pickle=bool(settings.options.get("trust_pickle", False)))
    args = dict(loaded["config"]["arch"]["args"])
    labels = detoxify_labels(list(loaded["config"]["dataset"]["args"]["classes"]))
    hf_dir = settings.options.get("hf_config_dir")
    if hf_dir:
        # detoxify reads the config (with num_labels from the checkpoint) and the tokenizer from
        # `model_type`; pointing it at the local directory keeps both off the hub. Its own
        # `huggingface_config_path` is not used: it reads the config *without* num_labels, so a
        # plain bert-base config (2 labels) would not fit the checkpoint's 6-label head.
        args["model_type"] = str(hf_dir)
    elif not Path(str(args["model_type"])).is_dir():
        log.warning("detoxify checkpoint %s names %r, not a local directory: transformers will look for it in "
                    "the HF cache (set options.hf_config_dir to be independent of it)", path, args["model_type"])
    model, tokenizer = get_model_and_tokenizer(**args, state_dict=loaded["state_dict"])
    outputs = int(model.config.num_labels)
    if outputs != len(labels):
        raise ValueError(f"{path}: the model has {outputs} outputs but the checkpoint names {len(labels)} classes")
    runner = HFRunner(model, tokenizer, settings, version=_file_version(path))
    runner.labels = labels  # the checkpoint's class names, not the HF config's (often LABEL_0..5)
    log.info("loaded detoxify checkpoint %s for task %r on %s (%s)", path, settings.task, runner.device,
             runner.dtype)
    return runner


def load_bilstm_runner(settings: ModelSettings) -> BiLSTMRunner:
    from detectors.toxic_bilstm import WHEEL_LABELS, load_bilstm

    return load_bilstm(settings, detoxify_labels(WHEEL_LABELS))
