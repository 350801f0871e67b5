"""Windows, the classifier's view and the threat ensemble of a scores task (detectors/scanned.py)."""

from __future__ import annotations

import numpy as np

from detectors.runtime.client import ScanResult
from detectors.runtime.protocol import TaskInfo
from detectors.scanned import ScannerDetector, Shaping, pieces, windows

LABELS = ["toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"]


class LastWordsModel:
    """A fake scanner whose model, like the BiLSTM, reads only a text's last 100 words, and scores
    `insult` 0.9 when it sees the word "idiot"."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def ping(self) -> dict[str, TaskInfo]:
        return {"tox": TaskInfo(kind="fake", output="scores", labels=LABELS, device="cpu", dtype="float32",
                                model_version="1")}

    async def scan(self, task: str, texts: list[str], priority: str = "request",
                   timeout_s: float | None = None) -> ScanResult:
        self.seen += texts
        scores = np.zeros((len(texts), len(LABELS)), dtype=np.float32)
        for row, text in enumerate(texts):
            if "idiot" in text.split()[-100:]:
                scores[row, LABELS.index("insult")] = scores[row, 0] = 0.9
        return ScanResult(labels=LABELS, scores=scores)


def detector(model: LastWordsModel, shaping: Shaping | None = None) -> ScannerDetector:
    return ScannerDetector("toxicity", "tox", model, frozenset({"request"}), report_min=0.5,  # type: ignore[arg-type]
                           shaping=shaping)


def test_windows_overlap_and_cover_the_whole_text() -> None:
    words = [f"w{i}" for i in range(100)]
    got = windows(" ".join(words), 40)
    assert [w.split()[0] for w in got] == ["w0", "w20", "w40", "w60"] and got[-1].split()[-1] == "w99"
    assert all(len(w.split()) == 40 for w in got)
    assert windows("short text", 40) == ["short text"] and windows(" ".join(words), 0) == [" ".join(words)]
    assert pieces("One. You idiot. Three.", 40) == ["One. You idiot. Three.", "One.", "You idiot.", "Three."]


async def test_padding_cannot_hide_an_insult_and_scores_are_the_max() -> None:
    text = "you idiot " + "and then some more benign words " * 30
    plain = await detector(LastWordsModel(), Shaping(0, False, False)).detect([text])
    assert plain == [[]]  # the model alone reads the end only
    found = (await detector(LastWordsModel()).detect([text]))[0]
    assert {f.label for f in found} == {"toxicity", "insult"} and all(f.score == np.float32(0.9) for f in found)
    assert "max over" in found[0].explanation


async def test_leetspeak_is_folded_and_threats_join_the_model() -> None:
    model = LastWordsModel()
    found = await detector(model).detect(["y0u 1d10t", "I will kill you.", "nice day"])
    assert {f.label for f in found[0]} == {"toxicity", "insult"} and "you idiot" in model.seen
    threat = {f.label: f.score for f in found[1]}
    assert threat["threat"] >= 0.9 and threat["toxicity"] >= 0.9 and found[2] == []
    off = await detector(LastWordsModel(), Shaping(64, False, False)).detect(["y0u 1d10t", "I will kill you."])
    assert off == [[], []]
