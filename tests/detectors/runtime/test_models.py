"""The runner's tokenizer: the Rust core it uses must give the ids transformers' wrapper gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest

from detectors.runtime.hf import load_hf_runner
from detectors.runtime.models import MODEL_KINDS, load_runner
from detectors.runtime.settings import ModelKind, ModelSettings
from tests.detectors.runtime.test_batcher import sentences


def test_the_rust_tokenizer_is_used_and_encodes_as_the_wrapper_does(classifier: Any) -> None:
    assert classifier._rust is not None  # the fast path is the one under test
    texts = [*sentences(40, seed=5), "", "  spaces  ", "Ünïcödé 東京 ✓ emoji 🙂", "word " * 500]
    assert classifier.tokenize(texts) == classifier._wrapper_ids(texts)
    assert max(len(ids) for ids in classifier.tokenize(texts)) == classifier.settings.max_length


def test_truncation_follows_each_models_max_length(classifier_dir: Path) -> None:
    runner = load_hf_runner(ModelSettings(task="short", kind="classifier", path=str(classifier_dir), device="cpu",
                                          max_length=16))
    ids = runner.tokenize(["word " * 100])
    assert len(ids[0]) == 16 and ids == runner._wrapper_ids(["word " * 100])


def test_every_configurable_model_kind_has_a_loader_and_no_other() -> None:
    assert set(MODEL_KINDS) == set(get_args(ModelKind))


def test_an_unknown_model_kind_names_the_known_ones() -> None:
    settings = ModelSettings(task="x", kind="classifier").model_copy(update={"kind": "nonesuch"})  # past the Literal
    with pytest.raises(ValueError, match=r"unknown model kind 'nonesuch' .*classifier, detoxify, embedder"):
        load_runner(settings)
