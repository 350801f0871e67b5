"""Abuse rules (detectors/abuse_rules.py) and their place in the toxicity ensemble (detectors/scanned.py):
each miss class of issue 25 caught, and identity statements, negation and reported speech passed."""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from detectors.abuse_rules import ENGINE_ASCII, AbuseRules
from detectors.normalize import classifier_view, normalize
from detectors.runtime.client import ScanResult
from detectors.runtime.protocol import TaskInfo
from detectors.scanned import ScannerDetector, Shaping, pieces
from detectors.threats import REPORTED, ThreatRules

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"]
CAUGHT = {
    "insult": ["You're a lying, cheating scumbag.", "Get out of my sight, you useless oaf and stupid clown.",
               "u r a moron", "That teacher is a total idiot.", "Only an imbecile would think that.",
               "Nobody wants jerks like you around.", "Are you really that stupid?", "Fuck off already.",
               "Hey, dumbass, you broke the build.", "What a pathetic loser.", "You are so incredibly dense."],
    "identity_attack": ["Refugees are vermin.", "Muslims are all violent savages.", "Gays should be locked up.",
                        "Immigrants should all be sent back.", "Jews control the media.",
                        "Kick those dirty immigrants out.", "Women belong in the kitchen."],
    "sexual": ["Send me some nudes.", "Show me your boobs.", "You're a filthy slut.", "Suck my cock.",
               "I want to fuck you tonight.", "What colour panties do you have on?"],
}
PASSED = ["I am a gay man", "As a Black woman in engineering, I mentor students.", "We are Jewish and proud.",
          "I'm a trans woman looking for a new doctor.", "Muslims pray five times a day.",
          "Breast cancer screening saves lives.", "Refugees are fleeing the war.", "The idiot light is on.",
          "My dog is a bit of an idiot.", "I'm such an idiot, I forgot my keys.", "Kill the process and restart."]
NEGATED = ["You're not an idiot, everyone slips up.", "Immigrants are not criminals.", "You are no fool.",
           "I don't think you're stupid at all.", "Gays shouldn't be locked up for who they love."]
REPORTED_SPEECH = ["Calling someone an idiot is rude.", "She said 'you idiot' and slammed the door.",
                   'He wrote "you worthless loser" under my post.', "Why do people claim refugees are vermin?",
                   "Is it offensive to say immigrants are criminals?", "Translate 'you are a moron' to German."]


def best(text: str) -> float:
    view = normalize(text).text
    scores = [m.score for t in dict.fromkeys([view, classifier_view(view)]) for _, m in AbuseRules().matches(t)]
    return max(scores, default=0.0)


@pytest.mark.parametrize(("label", "text"), [(label, t) for label, texts in CAUGHT.items() for t in texts])
def test_each_miss_class_is_caught_under_its_label(label: str, text: str) -> None:
    found = AbuseRules().best(text)
    assert label in found and found[label].score >= 0.85, (text, found)


@pytest.mark.parametrize("text", PASSED + NEGATED)
def test_identity_statements_topics_and_negation_pass(text: str) -> None:
    assert best(text) == 0.0, (text, AbuseRules().matches(text))


@pytest.mark.parametrize("text", REPORTED_SPEECH)
def test_quoted_and_reported_abuse_scores_reported(text: str) -> None:
    assert best(text) <= REPORTED, (text, AbuseRules().matches(text))


def test_obfuscated_abuse_is_read_through_the_views() -> None:
    assert best("y0u 5tup1d m0r0n") >= 0.85 and best("Y\u043eu \u0430r\u0435 \u0430 l\u043es\u0435r") >= 0.85


def test_a_reporting_word_far_back_in_padding_does_not_excuse_a_glued_insult() -> None:
    padding = "she told me about the garden and the weather and the trains and the long walk home and " * 3
    assert best(padding + "you worthless idiot and the rest of the day was calm") >= 0.85
    threat = ThreatRules().score(padding + "I will kill you and then we had lunch")
    assert threat is not None and threat.score > REPORTED


def test_threats_in_single_quotes_or_code_are_reported() -> None:
    for text in ["She wrote 'I will kill you' in her diary.", "The test feeds `I will kill you` to the rules."]:
        match = ThreatRules().score(text)
        assert match is not None and match.score == REPORTED, text


def test_clause_windows_read_a_long_unpunctuated_sentence_in_small_pieces() -> None:
    text = " ".join(f"w{i}" for i in range(40))
    small = [p for p in pieces(text, 64, 16) if p != text]
    assert small and all(len(p.split()) == 16 for p in small) and small[-1].split()[-1] == "w39"
    assert pieces("One. You idiot. Three.", 40, 16) == pieces("One. You idiot. Three.", 40)


class ZeroModel:
    """A scanner whose model scores every text 0: whatever is found comes from the rules."""

    async def ping(self) -> dict[str, TaskInfo]:
        return {"tox": TaskInfo(kind="fake", output="scores", labels=LABELS, device="cpu", dtype="float32",
                                model_version="1")}

    async def scan(self, task: str, texts: list[str], priority: str = "request",
                   timeout_s: float | None = None) -> ScanResult:
        return ScanResult(labels=LABELS, scores=np.zeros((len(texts), len(LABELS)), dtype=np.float32))


def detector(shaping: Shaping | None = None) -> ScannerDetector:
    return ScannerDetector("toxicity", "tox", ZeroModel(), frozenset({"request"}), report_min=0.5,  # type: ignore[arg-type]
                           shaping=shaping)


async def test_the_rules_raise_the_labels_policies_act_on() -> None:
    found = await detector().detect(["Black people are savages.", "Blow me.", "You absolute moron.",
                                     "I am a gay man", "She said 'you idiot'."])
    scores = [{f.label: f.score for f in row} for row in found]
    assert scores[0]["identity_attack"] >= 0.9 and scores[0]["toxicity"] >= 0.9
    assert scores[1]["obscene"] >= 0.9 and scores[1]["toxicity"] >= 0.9
    assert scores[2]["insult"] >= 0.9 and "abuse rules" in found[2][0].explanation
    assert scores[3] == {} and scores[4] == {}


async def test_the_threat_rules_switch_turns_the_abuse_rules_off_too() -> None:
    assert await detector(Shaping(64, True, False)).detect(["Black people are savages."]) == [[]]
    on = await detector(Shaping(64, True, False, abuse_rules=True)).detect(["Black people are savages."])
    assert {f.label for f in on[0]} == {"toxicity", "identity_attack"}


def _quality_texts() -> list[str]:
    texts = [json.loads(line)["text"] for name in ("toxicity_set.jsonl", "toxicity_holdout.jsonl")
             for line in (ROOT / "bench" / "data" / name).read_text().splitlines() if line.strip()]
    return texts + [text for group in CAUGHT.values() for text in group] + PASSED + NEGATED + REPORTED_SPEECH


def test_the_word_gate_changes_no_match() -> None:
    # Rules run only where one of their words (or phrases) is in the text; the gate must never hide
    # a match: every text of both toxicity sets, their classifier views, upper case, texts glued
    # together, and non-ASCII variants (the regex engine's own case folding: KELVIN SIGN is a "k").
    rules = AbuseRules()
    texts = _quality_texts()
    rng = random.Random(5)
    variants = ([classifier_view(t) for t in texts] + [t.upper() for t in texts]
                + [" ".join(rng.sample(texts, 3)) for _ in range(200)]
                + [t + " café" for t in texts] + [t.replace("k", "\u212a").replace("s", "\u017f") for t in texts]
                + [t.replace("i", "\u0131").replace("I", "\u0130") for t in texts])
    for text in texts + variants:
        assert rules.matches(text) == rules.matches(text, gated=False), text
    assert any(rules.matches(t.replace("k", "\u212a")) for t in CAUGHT["insult"] if "k" in t)  # the odd letters matter
    benign = [t for t in PASSED if not rules.matches(t, gated=False)]
    assert sum(len(rules._possible(t)) for t in benign) < len(benign) * len(rules._rules) / 4  # the gate skips most


def test_the_gate_knows_every_character_the_regex_engine_folds_to_ascii() -> None:
    letter = re.compile("[a-z]", re.IGNORECASE)
    folds = {chr(c) for c in range(0x80, sys.maxunicode + 1) if letter.fullmatch(chr(c))}
    assert folds == {chr(c) for c in ENGINE_ASCII}


def test_glued_sentences_and_tell_offs() -> None:
    # a sentence glued into padding that holds a reporting word ("told") is not reported speech
    padding = "we walked by the river and she told stories about the orchard that used to "
    assert best(padding + "Your code is garbage, just like you stand by the old bridge") >= 0.85
    assert best("You're a sorry excuse for a coder, you fool We spent the rest of the day outside") >= 0.85
    for text in ["Shut your mouth.", "Nobody asked you, loser practise more", "Shut your stupid face"]:
        assert best(text) >= 0.85, text
    for text in ["Shut your laptop before you leave.", "Nobody asked you to stay late, thanks anyway.",
                 "The bus driver told me that used to Happen a lot"]:
        assert best(text) == 0.0, text


class WordModel(ZeroModel):
    """A word-level model: any text with an insult or a profanity in it scores 0.95 toxicity."""

    WORDS = ("idiot", "moron", "stupid", "shit", "loser")

    async def scan(self, task: str, texts: list[str], priority: str = "request",
                   timeout_s: float | None = None) -> ScanResult:
        scores = np.zeros((len(texts), len(LABELS)), dtype=np.float32)
        for row, text in enumerate(texts):
            if any(w in text.lower() for w in self.WORDS):
                scores[row, 0] = 0.95
        return ScanResult(labels=LABELS, scores=scores)


@pytest.mark.parametrize(("text", "toxic"), [
    ("You're not an idiot, everyone slips up.", False),        # negated
    ("Calling someone a moron in a review is rude.", False),   # reported
    ("Is it offensive to call someone stupid?", False),        # asked about
    ("He was accused of calling his boss a loser.", False),
    ("You're not an idiot, you're a moron.", True),            # one insult stands as said
    ("You idiot.", True),
    ("Everyone says you're a moron.", True),                   # reported, but aimed at the reader
    ("Calling you an idiot would insult idiots.", True),
    ("I can't believe how stupid you are.", True),             # "can't believe": no negation of the word
    ("Holy shit, this is great.", True),                       # said, not reported: the model's score stays
])
async def test_a_words_only_model_score_is_dropped_where_every_such_word_is_negated_or_reported(
        text: str, toxic: bool) -> None:
    det = ScannerDetector("toxicity", "tox", WordModel(), frozenset({"request"}), report_min=0.5)  # type: ignore[arg-type]
    found = {f.label: f.score for f in (await det.detect([text]))[0]}
    assert (found.get("toxicity", 0.0) >= 0.8) is toxic, (text, found)
