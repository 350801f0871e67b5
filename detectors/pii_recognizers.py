"""Warden's own presidio recognizers: cards of every brand, cue-gated national phones, street addresses.

The shapes themselves are pure functions (detectors/pii_numbers.py, detectors/pii_address.py), so
they are tested without presidio; this module only wraps them as presidio recognizers, built
inside a function because presidio is imported lazily (see detectors/pii_presidio.py).
"""

from __future__ import annotations

from typing import Any

from detectors.pii_address import find_addresses
from detectors.pii_numbers import PhoneCues, find_cards

ADDRESS_RECOGNIZER = "AddressRecognizer"
CUE_PHONE_SCORE = 0.5  # above PHONE_NUMBER's 0.4 minimum: the cue word is evidence libphonenumber lacks


def build_recognizers(phone_cues: list[str], phone_regions: list[str], addresses: bool) -> list[Any]:
    """The recognizers build_analyzer adds to presidio's registry (the card one replaces presidio's)."""
    from presidio_analyzer import AnalysisExplanation, LocalRecognizer, RecognizerResult

    def result(entity: str, start: int, end: int, score: float, by: Any, why: str) -> Any:
        explanation = AnalysisExplanation(recognizer=by.name, original_score=score, textual_explanation=why)
        # the identifier is what presidio's context step matches results to their recognizer by
        return RecognizerResult(entity, start, end, score, analysis_explanation=explanation,
                                recognition_metadata={"recognizer_name": by.name, "recognizer_identifier": by.id})

    class CardRecognizer(LocalRecognizer):
        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            return [result("CREDIT_CARD", s, e, 1.0, self, why) for s, e, why in find_cards(text)]

    class CuePhoneRecognizer(LocalRecognizer):
        def __init__(self, cues: PhoneCues) -> None:
            self.cues = cues
            super().__init__(supported_entities=["PHONE_NUMBER"], name="CuePhoneRecognizer")

        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            return [result("PHONE_NUMBER", s, e, CUE_PHONE_SCORE, self, "phone-shaped number next to a cue word")
                    for s, e in self.cues.find(text)]

    class AddressRecognizer(LocalRecognizer):
        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            return [result("LOCATION", s, e, score, self, "street address shape")
                    for s, e, score in find_addresses(text)]

    found: list[Any] = [CardRecognizer(supported_entities=["CREDIT_CARD"], name="CardRecognizer")]
    if phone_cues:
        found.append(CuePhoneRecognizer(PhoneCues(phone_cues, phone_regions)))
    if addresses:
        found.append(AddressRecognizer(supported_entities=["LOCATION"], name=ADDRESS_RECOGNIZER))
    return found
