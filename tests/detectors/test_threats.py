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


# Threat forms beyond "I will <verb> you", each with look-alikes that are not threats.
FORMS = {
    "a threat after a condition, not a quotation": (
        ["Say one more word and you're dead.", "Another word out of you and I'll break your jaw."],
        ["Use the word 'dead' sparingly in headlines.", "Words like 'kill' get flagged by the filter."]),
    "lasting harm promised": (
        ["We'll make sure he never walks again.", "I'm going to make sure you can't breathe again."],
        ["I'll make sure you never miss a deadline again.", "We will make sure you never walk alone again."]),
    "danger to the reader or kin": (
        ["Your kids will not be safe after this.", "You won't be safe anywhere in this town."],
        ["Your kids will be safe at the new school.", "You won't be safe driving on bald tyres."]),
    "regret announced": (
        ["Keep it up and you'll be sorry.", "Just wait until I'm finished with you."],
        ["I'm sorry you'll miss the party.", "When I'm finished with the report I'll call you."]),
    "violence in the present tense": (
        ["The next time we meet I'm shooting you.", "We are hunting you down tonight."],
        ["I'm shooting you an invite later.", "We're killing it at the conference."]),
    "a call to harm a named role": (
        ["Somebody needs to stab that traitor.", "Someone should strangle the landlord."],
        ["Someone should call the landlord.", "Somebody needs to shoot the wedding photos."]),
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_threat_forms_and_their_look_alikes(form: str) -> None:
    rules = ThreatRules()
    threats, benign = FORMS[form]
    for text in threats:
        match = rules.score(text)
        assert match is not None and match.score >= 0.75, (form, text, match)
    for text in benign:
        match = rules.score(text)
        assert match is None or match.score <= REPORTED, (form, text, match)
