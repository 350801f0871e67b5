"""Threat rules (detectors/threats.py): explicit threats caught, hard negatives passed."""

from __future__ import annotations

import pytest

from detectors.threats import EXPLICIT, REPORTED, ThreatRules

THREATS = ["I will kill you.", "I'm going to find you and kill you", "I'll beat the shit out of you",
           "we will burn your house down", "I'm going to put a bullet in your head", "I know where you live",
           "You're dead, kid.", "Someone should shoot him", "If you touch my car again I'll break your legs",
           "I want to stab you", "I swear I will end you"]
NOT_THREATS = ["I will never hurt you", "I'm not going to kill you", "I'll shoot you an email",
               "I'm going to beat you at chess", "How do I kill a zombie process?", "He said he will kill me",
               "I will kill it at the presentation", "I'll find you a hotel", "I'll hurt your feelings",
               "We will destroy you in the finals", "I want to kill myself"]


@pytest.mark.parametrize("text", THREATS)
def test_explicit_threats_score_high(text: str) -> None:
    match = ThreatRules().score(text)
    assert match is not None and match.score >= EXPLICIT, text


@pytest.mark.parametrize("text", NOT_THREATS)
def test_negated_idiomatic_and_reported_text_does_not(text: str) -> None:
    match = ThreatRules().score(text)
    assert match is None or match.score <= REPORTED, (text, match)


def test_quoted_and_reported_threats_score_reported() -> None:
    rules = ThreatRules()
    for text in ['The villain says "I will destroy you" and leaves.', "In the song she sings I will kill you."]:
        match = rules.score(text)
        assert match is not None and match.score == REPORTED, text
    match = rules.score("Fine. I will kill you.")
    assert match is not None and match.score == EXPLICIT and match.start == 6
