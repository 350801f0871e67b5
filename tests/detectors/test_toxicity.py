"""Toxicity runners: detoxify checkpoints through detoxify's code and the scanner, and the BiLSTM port.

The port is checked three ways: against an independent numpy re-implementation of the Keras
forward pass read straight from the h5 file, against the scores the wheel's README prints from
its TensorFlow run, and on a small labeled set written here.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import pickle
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from detectors.runtime.client import ScannerClient
from detectors.runtime.settings import ModelSettings, ScannerSettings
from detectors.runtime.supervisor import ScannerSupervisor
from detectors.toxic_bilstm import MAXLEN, KerasTokenizer, _TokenizerUnpickler, pad_pre, wheel_model_dir
from detectors.toxicity import LABELS, load_bilstm_runner, load_detoxify_runner

if importlib.util.find_spec("h5py") is None or importlib.util.find_spec("toxic_classifier") is None:
    pytest.skip("needs `pip install --no-deps toxic-comment-classifier h5py`", allow_module_level=True)
JIGSAW_CLASSES = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
PORT_TOLERANCE = 5e-4  # "equal to 3 decimals"; the measured difference is ~1e-6 (fp32 summation order)

# The scores the wheel's README shows from its Keras/TensorFlow run: the only ground truth from
# the model's authors. README prints the mean of the six labels to 4 decimals, and all six labels
# of the first text in full.
README_MEANS = {
    "You are so dumb and stupid!": 0.4347, "I hate you so much!": 0.1395, "This is wonderful news.": 0.0013,
    "You're disgusting!": 0.3110, "Absolutely love your energy!": 0.0088, "You're the worst person ever!": 0.0937,
    "Have a nice day :)": 0.0115,
}
README_FIRST = [0.9889402985572815, 0.07256772369146347, 0.620429277420044, 0.01934845559298992,
                0.8664075136184692, 0.04072948172688484]

# A labeled set written for this test (not from Jigsaw). A text is flagged when its `toxicity`
# score is >= 0.5: the model is trained with per-label binary cross-entropy, so 0.5 is its own
# decision boundary, and on this set it sits in a wide gap (toxic >= 0.72, benign <= 0.03), so
# the test is not balanced on a knife edge.
THRESHOLD = 0.5
TOXIC = [
    "You are a pathetic idiot and everyone laughs at you.",
    "Shut up, you stupid moron.",
    "I will find where you live and kill you.",
    "You're a worthless piece of garbage.",
    "Go to hell, you disgusting loser.",
    "What a dumb fucking question, are you retarded?",
    "You are an ignorant fool and a liar.",
    "I'm going to beat you until you bleed.",
    "This author is a complete asshole.",
    "Fuck off and die.",
    "You ugly fat pig, nobody wants you here.",
    "Only an idiot like you would write such crap.",
]
BENIGN = [
    "Thanks for the quick reply, that fixed my problem.",
    "Could you summarise this article in three bullet points?",
    "The meeting has been moved to Thursday at 10 am.",
    "I love hiking in the mountains with my family.",
    "Please review the attached pull request when you have time.",
    "The weather today is sunny with a light breeze.",
    "What is the capital of Australia?",
    "Great work on the presentation, the charts were very clear.",
    "Can you recommend a good book about the history of Rome?",
    "I disagree with your conclusion, but the data is interesting.",
    "Our team shipped the new release last night.",
    "",
]
# Benign, but a word-level model trained on Wikipedia talk pages scores it ~0.7: printed, not asserted.
KNOWN_FALSE_POSITIVES = ["How do I kill a zombie process on Linux?"]
EDGE = ["!!!", "WORDS ALL IN CAPITALS, YOU FOOL", "word " * 150 + "idiot", "naïve café résumé", "a\tb\nc"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """These models run hundreds of tiny ops per text; on a busy 2-core machine two intra-op threads
    wait on each other at every op (10-50x slower), so this module runs with one, as the scanner does."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- the independent reference: Keras' forward pass in numpy, straight from the h5 file ---

def keras_reference() -> Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]:
    import h5py  # type: ignore[import-untyped]

    with h5py.File(wheel_model_dir() / "model.weights.h5", "r") as f:
        w = {name: np.asarray(f[f"layers/{name}"]) for name in (
            "embedding/vars/0", "dense/vars/0", "dense/vars/1", "dense_1/vars/0", "dense_1/vars/1",
            *(f"bidirectional/{d}_layer/cell/vars/{i}" for d in ("forward", "backward") for i in range(3)))}

    def sigmoid(z: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.asarray(1.0 / (1.0 + np.exp(-z)))

    def lstm(x: np.ndarray[Any, Any], direction: str) -> np.ndarray[Any, Any]:
        """keras LSTMCell: z = x@kernel + h@recurrent_kernel + bias, gates i, f, c, o; go_backwards for the
        backward layer, whose outputs Bidirectional re-reverses (irrelevant under max pooling)."""
        kernel, recurrent, bias = (w[f"bidirectional/{direction}_layer/cell/vars/{i}"] for i in range(3))
        units = recurrent.shape[0]
        h = np.zeros((x.shape[0], units), np.float32)
        c = np.zeros_like(h)
        out = np.zeros((x.shape[0], x.shape[1], units), np.float32)
        steps = range(x.shape[1] - 1, -1, -1) if direction == "backward" else range(x.shape[1])
        for t in steps:
            i, f, g, o = np.split(x[:, t] @ kernel + h @ recurrent + bias, 4, axis=1)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
            out[:, t] = h
        return out

    def forward(ids: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        x = w["embedding/vars/0"][ids]
        pooled = np.concatenate([lstm(x, "forward"), lstm(x, "backward")], axis=2).max(axis=1)
        hidden = np.maximum(pooled @ w["dense/vars/0"] + w["dense/vars/1"], 0.0)
        return sigmoid(np.asarray(hidden @ w["dense_1/vars/0"] + w["dense_1/vars/1"]))

    return forward


@pytest.fixture(scope="session")
def bilstm() -> Any:
    return load_bilstm_runner(ModelSettings(task="toxicity", kind="toxic_bilstm", device="cpu"))


def scores(runner: Any, texts: list[str]) -> np.ndarray[Any, Any]:
    return runner.forward(runner.collate(runner.tokenize(texts)))  # type: ignore[no-any-return]


def test_bilstm_port_equals_the_numpy_keras_reference_and_the_readme(bilstm: Any) -> None:
    texts = [*README_MEANS, *TOXIC, *BENIGN, *KNOWN_FALSE_POSITIVES, *EDGE]
    port = scores(bilstm, texts)
    reference = keras_reference()(pad_pre(bilstm.tokenize(texts)))
    diff = float(np.abs(port - reference).max())
    print(f"\nBiLSTM port vs numpy Keras reference: max abs diff {diff:.2e} over {len(texts)} texts x 6 labels")
    assert diff < PORT_TOLERANCE
    assert bilstm.labels == list(LABELS)
    readme = np.array([README_MEANS[t] for t in README_MEANS])
    assert np.abs(port[: len(readme)].mean(axis=1) - readme).max() <= 5.1e-5  # README rounds to 4 decimals
    np.testing.assert_allclose(port[0], README_FIRST, atol=1e-5)


def test_bilstm_flags_toxic_and_passes_benign_text(bilstm: Any) -> None:
    rows = [("toxic", t, s) for t, s in zip(TOXIC, scores(bilstm, TOXIC), strict=True)]
    rows += [("benign", t, s) for t, s in zip(BENIGN, scores(bilstm, BENIGN), strict=True)]
    rows += [("known-FP", t, s) for t, s in zip(KNOWN_FALSE_POSITIVES, scores(bilstm, KNOWN_FALSE_POSITIVES),
                                                strict=True)]
    print("\n" + " ".join(f"{label[:8]:>8}" for label in LABELS) + "  truth    text")
    for truth, text, row in rows:
        print(" ".join(f"{v:8.3f}" for v in row) + f"  {truth:8} {text[:60]!r}")
    missed = [text for truth, text, row in rows if truth == "toxic" and row[0] < THRESHOLD]
    false_alarms = [text for truth, text, row in rows if truth == "benign" and row[0] >= THRESHOLD]
    assert not missed and not false_alarms, (missed, false_alarms)
    insults = scores(bilstm, TOXIC[:2])
    assert (insults[:, LABELS.index("insult")] >= THRESHOLD).all()


def test_bilstm_batched_equals_one_by_one(bilstm: Any) -> None:
    texts = [*TOXIC, *BENIGN, *EDGE]
    batched = scores(bilstm, texts)
    singles = np.concatenate([scores(bilstm, [t]) for t in texts])
    np.testing.assert_allclose(batched, singles, rtol=0, atol=1e-5)


def test_keras_tokenizer_semantics() -> None:
    """texts_to_sequences + pad_sequences defaults, on a vocabulary small enough to check by hand."""
    filters = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
    tok = KerasTokenizer({"the": 1, "cat": 2, "sat": 3, "rare": 7}, num_words=5, filters=filters, lower=True,
                         split=" ", oov_token=None)
    assert tok.words("The CAT,sat!\tdon't") == ["the", "cat", "sat", "don't"]  # ' is not a filter character
    assert tok.encode("The rare cat sat, unknown") == [1, 2, 3]  # index >= num_words and unknown words vanish
    with_oov = KerasTokenizer({"<oov>": 1, "the": 2, "rare": 9}, num_words=5, filters=filters, lower=True,
                              split=" ", oov_token="<oov>")
    assert with_oov.encode("the rare dog") == [2, 1, 1]
    padded = pad_pre([[], [4, 5], list(range(1, MAXLEN + 11))])
    assert padded.shape == (3, MAXLEN) and not padded[0].any()
    assert padded[1, -2:].tolist() == [4, 5] and not padded[1, :-2].any()
    assert padded[2, 0] == 11 and padded[2, -1] == MAXLEN + 10  # truncated at the front: the last words stay


def test_tokenizer_unpickler_refuses_anything_but_a_keras_tokenizer(tmp_path: Path) -> None:
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps(shutil.rmtree))
    with path.open("rb") as handle, pytest.raises(pickle.UnpicklingError, match="refusing"):
        _TokenizerUnpickler(handle).load()


# --- detoxify checkpoints ---

@pytest.fixture(scope="session")
def detoxify_ckpt(classifier_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT as a detoxify checkpoint, with the Jigsaw class names of detoxify's 'original'."""
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(classifier_dir, local_files_only=True)
    arch = {"model_type": str(classifier_dir), "model_name": "BertForSequenceClassification",
            "tokenizer_name": "BertTokenizer", "num_classes": len(JIGSAW_CLASSES)}
    path = tmp_path_factory.mktemp("detoxify") / "tiny.ckpt"
    torch.save({"config": {"arch": {"args": arch}, "dataset": {"args": {"classes": JIGSAW_CLASSES}}},
                "state_dict": model.state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def detoxify_reference(detoxify_ckpt: Path) -> Callable[[list[str]], np.ndarray[Any, Any]]:
    """Detoxify's own class and `predict`, one text per call."""
    from detoxify import Detoxify  # type: ignore[import-untyped]

    detox = Detoxify(checkpoint=str(detoxify_ckpt))
    assert detox.class_names == list(LABELS)
    return lambda texts: np.array([[detox.predict(t)[label] for label in LABELS] for t in texts])


class NotPlainData:
    """Anything but tensors and plain containers makes a checkpoint need full unpickling."""


def test_detoxify_checkpoint_with_a_hub_name_loads_from_hf_config_dir(
        detoxify_ckpt: Path, classifier_dir: Path, tmp_path: Path,
        detoxify_reference: Callable[[list[str]], np.ndarray[Any, Any]]) -> None:
    """Shaped like detoxify's released checkpoints: model_type is a hub name, the config beside the
    tokenizer is a plain 2-label one; nothing may reach the hub (HF_HUB_OFFLINE is set)."""
    hf_dir = tmp_path / "bert-base-uncased"
    shutil.copytree(classifier_dir, hf_dir)
    config = json.loads((hf_dir / "config.json").read_text())
    for key in ("id2label", "label2id"):
        config.pop(key)
    (hf_dir / "config.json").write_text(json.dumps(config))
    (hf_dir / "model.safetensors").unlink()
    checkpoint = torch.load(detoxify_ckpt, weights_only=True)
    checkpoint["config"]["arch"]["args"]["model_type"] = "bert-base-uncased"
    torch.save(checkpoint, tmp_path / "released-shape.ckpt")
    settings = ModelSettings(task="toxicity", kind="detoxify", path=str(tmp_path / "released-shape.ckpt"),
                             device="cpu", options={"hf_config_dir": str(hf_dir)})
    runner = load_detoxify_runner(settings)
    assert runner.labels == list(LABELS) and runner.kind == "detoxify" and runner.output == "scores"
    np.testing.assert_allclose(scores(runner, TOXIC[:4]), detoxify_reference(TOXIC[:4]), rtol=0, atol=1e-5)

    checkpoint["config"]["extra"] = NotPlainData()
    torch.save(checkpoint, tmp_path / "pickled.ckpt")
    with pytest.raises(ValueError, match="trust_pickle"):
        load_detoxify_runner(settings.model_copy(update={"path": str(tmp_path / "pickled.ckpt")}))
    trusted = settings.model_copy(update={"path": str(tmp_path / "pickled.ckpt"),
                                          "options": {"hf_config_dir": str(hf_dir), "trust_pickle": True}})
    assert load_detoxify_runner(trusted).labels == list(LABELS)
    with pytest.raises(ValueError, match="sigmoid"):
        load_detoxify_runner(settings.model_copy(update={"activation": "softmax"}))


async def test_toxicity_models_in_the_scanner_process(
        tmp_path: Path, detoxify_ckpt: Path, bilstm: Any,
        detoxify_reference: Callable[[list[str]], np.ndarray[Any, Any]]) -> None:
    """One scanner process serving both kinds: same scores as Detoxify.predict and as the in-process port."""
    common: dict[str, Any] = {"device": "cpu", "max_batch": 16, "max_wait_ms": 5}
    settings = ScannerSettings(
        socket=str(tmp_path / "scanner.sock"), torch_threads=1, ready_timeout_s=120,
        models=[ModelSettings(task="toxicity", kind="detoxify", path=str(detoxify_ckpt), **common),
                ModelSettings(task="toxicity_bilstm", kind="toxic_bilstm", **common)])
    texts = [*TOXIC, *BENIGN]
    supervisor = ScannerSupervisor(settings)
    await supervisor.start()
    client = ScannerClient(settings.address, call_timeout_s=30)
    try:
        tasks = await client.ping()
        assert tasks["toxicity"].kind == "detoxify" and tasks["toxicity"].labels == list(LABELS)
        assert tasks["toxicity_bilstm"].kind == "toxic_bilstm" and tasks["toxicity_bilstm"].labels == list(LABELS)
        assert tasks["toxicity_bilstm"].model_version == bilstm.version

        detox = await client.scan("toxicity", texts)
        assert detox.labels == list(LABELS) and detox.scores is not None
        np.testing.assert_allclose(detox.scores, detoxify_reference(texts), rtol=0, atol=1e-5)

        singles = await asyncio.gather(*(client.scan("toxicity_bilstm", [t]) for t in texts))  # batched together
        served = np.concatenate([s.scores for s in singles if s.scores is not None])
        np.testing.assert_allclose(served, scores(bilstm, texts), rtol=0, atol=1e-5)
    finally:
        await client.close()
        await supervisor.stop()
