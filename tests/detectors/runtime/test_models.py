"""The runner's tokenizer: the Rust core it uses must give the ids transformers' wrapper gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detectors.runtime.models import load_runner
from detectors.runtime.settings import ModelSettings
from tests.detectors.runtime.test_batcher import sentences


def test_the_rust_tokenizer_is_used_and_encodes_as_the_wrapper_does(classifier: Any) -> None:
    assert classifier._rust is not None  # the fast path is the one under test
    texts = [*sentences(40, seed=5), "", "  spaces  ", "Ünïcödé 東京 ✓ emoji 🙂", "word " * 500]
    assert classifier.tokenize(texts) == classifier._wrapper_ids(texts)
    assert max(len(ids) for ids in classifier.tokenize(texts)) == classifier.settings.max_length


def test_truncation_follows_each_models_max_length(classifier_dir: Path) -> None:
    runner = load_runner(ModelSettings(task="short", kind="classifier", path=str(classifier_dir), device="cpu",
                                       max_length=16))
    ids = runner.tokenize(["word " * 100])
    assert len(ids[0]) == 16 and ids == runner._wrapper_ids(["word " * 100])
