"""Redaction: presidio-anonymizer's operators, consistent within one Redactor, windows and overlaps."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from detectors.base import Finding
from detectors.redact import Operator, Redactor, merge
from detectors.runtime.protocol import Span

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")  # presidio_anonymizer imports presidio_analyzer
SALT = b"deployment-salt-0123456789"


def span(label: str, text: str, value: str, score: float = 0.9, nth: int = 0) -> Span:
    start = -1
    for _ in range(nth + 1):
        start = text.index(value, start + 1)
    return Span(label=label, score=score, start=start, end=start + len(value))


def test_replace_default_new_value_and_numbered_consistency_across_calls() -> None:
    text = "Mail ann@x.io or bob@y.io, then ann@x.io again; call (415) 555-0132."
    spans = [span("EMAIL_ADDRESS", text, "ann@x.io"), span("EMAIL_ADDRESS", text, "bob@y.io"),
             span("EMAIL_ADDRESS", text, "ann@x.io", nth=1), span("PHONE_NUMBER", text, "(415) 555-0132")]
    assert Redactor().redact(text, spans) == ("Mail <EMAIL_ADDRESS> or <EMAIL_ADDRESS>, then <EMAIL_ADDRESS> again; "
                                              "call <PHONE_NUMBER>.")
    numbered = Redactor({"DEFAULT": {"type": "replace", "numbered": True},
                         "PHONE_NUMBER": {"type": "replace", "new_value": "[phone]"}})
    assert numbered.redact(text, spans) == ("Mail <EMAIL_ADDRESS_1> or <EMAIL_ADDRESS_2>, then <EMAIL_ADDRESS_1> "
                                            "again; call [phone].")
    # a later chunk of the same response: same values keep their numbers, spacing variants too
    later = "Reply to BOB@y.io, cc carol@z.io"
    assert numbered.redact(later, [span("EMAIL_ADDRESS", later, "BOB@y.io"),
                                   span("EMAIL_ADDRESS", later, "carol@z.io")]) == (
        "Reply to <EMAIL_ADDRESS_2>, cc <EMAIL_ADDRESS_3>")
    phones = Redactor({"PHONE_NUMBER": {"type": "replace", "numbered": True}})
    one, two = "(415) 555-0132", "415-555-0132"
    assert phones.redact(one, [Span(label="PHONE_NUMBER", score=1, start=0, end=len(one))]) == "<PHONE_NUMBER_1>"
    assert phones.redact(two, [Span(label="PHONE_NUMBER", score=1, start=0, end=len(two))]) == "<PHONE_NUMBER_1>"
    # another response starts over: numbers say nothing across responses
    fresh = Redactor({"DEFAULT": {"type": "replace", "numbered": True}})
    carol = [span("EMAIL_ADDRESS", later, "carol@z.io")]
    assert fresh.redact(later, carol) == "Reply to BOB@y.io, cc <EMAIL_ADDRESS_1>"


def test_operators_match_presidio_anonymizer() -> None:
    from presidio_anonymizer.entities import OperatorConfig
    from presidio_anonymizer.operators import Hash, Mask, Redact, Replace

    value = "4111 1111 1111 1111"
    cases = [
        (OperatorConfig("mask", {"masking_char": "#", "chars_to_mask": 12, "from_end": False}), Mask()),
        (OperatorConfig("mask", {"masking_char": "*", "chars_to_mask": 4, "from_end": True}), Mask()),
        (OperatorConfig("hash", {"hash_type": "sha256"}), Hash()),
        (OperatorConfig("hash", {"hash_type": "sha512"}), Hash()),
        (OperatorConfig("replace", {"new_value": "[card]"}), Replace()),
        (OperatorConfig("redact", {}), Redact()),
    ]
    for config, presidio in cases:
        params = dict(config.params)
        if config.operator_name == "hash":
            params["salt"] = SALT
        expected = presidio.operate(value, params)
        redactor = Redactor({"CREDIT_CARD": config}, salt=SALT)
        assert redactor.replacement("CREDIT_CARD", value) == expected, config
    assert Replace().operate(value, {"entity_type": "CREDIT_CARD"}) == Redactor().replacement("CREDIT_CARD", value)


def test_mask_hash_keep_and_salt_rules() -> None:
    text = "SSN 219-09-9999 and card 4111111111111111"
    spans = [span("US_SSN", text, "219-09-9999"), span("CREDIT_CARD", text, "4111111111111111")]
    masked = Redactor({"CREDIT_CARD": {"type": "mask", "chars_to_mask": 12}, "US_SSN": {"type": "keep"}})
    assert masked.redact(text, spans) == "SSN 219-09-9999 and card ************1111"
    hashed = Redactor({"DEFAULT": {"type": "hash"}}, salt=SALT)
    once, again = hashed.redact(text, spans), Redactor({"DEFAULT": {"type": "hash"}}, salt=SALT).redact(text, spans)
    assert once == again and "219-09-9999" not in once  # same deployment salt: joinable across responses
    assert once != Redactor({"DEFAULT": {"type": "hash"}}, salt=b"another-deployment-salt").redact(text, spans)
    with pytest.raises(ValueError, match="salt"):
        Redactor({"US_SSN": {"type": "hash"}}, salt=b"short")
    with pytest.raises(ValueError, match="per deployment"):
        Redactor({"US_SSN": {"type": "hash", "salt": "x" * 20}}, salt=SALT)
    with pytest.raises(ValidationError):
        Operator(type="mask", numbered=True)


def test_overlapping_spans_merge_and_keep_the_higher_score() -> None:
    text = "IBAN NL32 ANIC 7398 8297 00 ok"
    iban = span("IBAN_CODE", text, "NL32 ANIC 7398 8297 00", score=1.0)
    phone = span("PHONE_NUMBER", text, "7398 8297 00", score=0.4)
    assert Redactor().redact(text, [phone, iban]) == "IBAN <IBAN_CODE> ok"
    a, b = "Maria Garcia", "Garcia-Lopez"
    text2 = "Ask Maria Garcia-Lopez now"
    partial = [Span(label="PERSON", score=0.85, start=4, end=4 + len(a)),
               Span(label="LOCATION", score=0.9, start=10, end=10 + len(b))]
    assert Redactor().redact(text2, partial) == "Ask <LOCATION> now"
    assert merge([("A", 0.5, 0, 5), ("B", 0.7, 5, 9), ("C", 0.2, 3, 4)]) == [("A", 0.5, 0, 5), ("B", 0.7, 5, 9)]


def test_offsets_relative_to_a_window_of_a_stream() -> None:
    released, window = "Contact: Maria Gar", "cia at maria@example.com today"
    scanned = released + window  # the proxy scans the released tail plus its hold-back window
    spans = [span("PERSON", scanned, "Maria Garcia"), span("EMAIL_ADDRESS", scanned, "maria@example.com")]
    redactor = Redactor({"DEFAULT": {"type": "replace", "numbered": True}})
    # the part of the name still held back is cut at the window's edge, not let through
    assert redactor.redact(window, spans, offset=len(released)) == "<PERSON_1> at <EMAIL_ADDRESS_1> today"
    buffer = "Earlier text. " + window
    found_in_window = [Span(label="EMAIL_ADDRESS", score=1, start=7, end=24)]  # found in buffer[14:]
    assert redactor.redact(buffer, found_in_window, offset=-14) == "Earlier text. cia at <EMAIL_ADDRESS_1> today"
    assert redactor.redact("nothing here", spans, offset=500) == "nothing here"
    assert Redactor().redact("x y", [Finding("pii", "PERSON", 0.9)]) == "x y"  # a finding without a place


def test_no_raw_value_is_held_and_no_heavy_import() -> None:
    secret = "zelda.quint@example.com"
    redactor = Redactor({"DEFAULT": {"type": "replace", "numbered": True}})
    redactor.redact(f"mail {secret}", [Span(label="EMAIL_ADDRESS", score=1, start=5, end=5 + len(secret))])
    held = repr(vars(redactor))
    assert secret not in held and secret.replace(".", "") not in held
    check = ("import sys, detectors.redact; heavy = [m for m in sys.modules if m.split('.')[0] in "
             "('spacy', 'presidio_analyzer', 'presidio_anonymizer', 'torch')]; assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", check], check=True, timeout=60)
