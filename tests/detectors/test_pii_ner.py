"""PII with a transformers NER model (`nlp_engine: transformers`), loaded and run through the real code."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors.pii import PiiRunner, load_pii_runner
from detectors.pii_ner import TransformersNer
from detectors.runtime.settings import ModelSettings
from tests.support.tiny_models import write_tiny_ner


@pytest.fixture(scope="module")
def ner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_ner(tmp_path_factory.mktemp("tiny-ner"))


@pytest.fixture(scope="module")
def runner(ner_dir: Path) -> PiiRunner:
    settings = ModelSettings(task="pii", kind="pii", device="cpu",
                             options={"nlp_engine": "transformers", "ner_model": str(ner_dir)})
    return load_pii_runner(settings)


def test_names_come_from_the_model_with_its_scores(runner: PiiRunner) -> None:
    text = "hello Maria, thanks for the model. 4111 1111 1111 1111"  # other words are in the tiny vocabulary
    spans = runner.analyze([text, "the model is good", "Thanks"])
    people = [s for s in spans[0] if s.label == "PERSON"]
    assert [text[s.start:s.end] for s in people] == ["Maria"]
    assert 0.99 < people[0].score <= 1.0  # the model's probability, not spaCy's fixed 0.85
    assert "SpacyRecognizer" in people[0].explanation
    assert any(s.label == "CREDIT_CARD" for s in spans[0])  # patterns still run beside it
    assert spans[1] == [] and spans[2] == []
    assert runner.version.endswith(runner.version.split("+")[-1]) and "transformers-" in runner.version
    assert runner.device == "cpu" and runner.memory_bytes() == 0


def test_pieces_join_into_words_and_i_tags_continue_entities(ner_dir: Path) -> None:
    ner = TransformersNer(str(ner_dir), {"PER": "PERSON", "LOC": "LOCATION"}, "cpu")
    ner.id2label = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
    # "Ana Li in Oslo,": pieces a|na, li, in, oslo, "," (a word of its own); tags by first piece
    offsets = [[0, 0], [0, 1], [1, 3], [4, 6], [7, 9], [10, 14], [14, 15], [0, 0]]
    words = [None, 0, 0, 1, 2, 3, 4, None]
    tags = [0, 1, 0, 2, 0, 3, 0, 0]
    scores = [1.0, 0.9, 0.5, 0.8, 0.99, 0.7, 0.1, 1.0]
    assert ner.entities(offsets, words, tags, scores) == [(0, 6, "PERSON", 0.8), (10, 14, "LOCATION", 0.7)]
    # an I- tag of another type starts its own entity
    assert ner.entities([[0, 3], [4, 7]], [0, 1], [3, 2], [0.9, 0.9]) == [(0, 3, "LOCATION", 0.9),
                                                                         (4, 7, "PERSON", 0.9)]


def test_a_missing_model_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"needs options\.ner_model"):
        load_pii_runner(ModelSettings(task="pii", kind="pii", options={"nlp_engine": "transformers"}))
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        load_pii_runner(ModelSettings(task="pii", kind="pii", options={"nlp_engine": "transformers",
                                                                      "ner_model": str(tmp_path / "absent")}))
