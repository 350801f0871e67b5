"""Issue 25's PII miss classes, one test each, on the pure shapes (no presidio, no spaCy): cards of
every brand and length, cue-gated national phones, street addresses, name trims, `warden up`'s rule.

The runner-level checks of the same classes (through presidio and the guards) are in test_pii.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from detectors.pii_address import find_addresses
from detectors.pii_numbers import DEFAULT_PHONE_CUES, PhoneCues, find_cards, luhn
from detectors.pii_rules import trim_name


def card(prefix: str, length: int) -> str:
    """A Luhn-valid number of that prefix and length."""
    body = prefix + "0" * (length - len(prefix) - 1)
    return next(body + d for d in "0123456789" if luhn(body + d))


def values(text: str, spans: list[tuple[int, int]]) -> list[str]:
    return [text[s:e] for s, e in spans]


@pytest.mark.parametrize(("brand", "number"), [
    ("Maestro, 12 digits", card("5018", 12)), ("Visa, 19 digits", card("4", 19)),
    ("JCB 2131, 15 digits", card("2131", 15)), ("JCB 1800, 15 digits", card("1800", 15)),
    ("UnionPay, 19 digits", card("62", 19)), ("Diners, 14 digits", card("36", 14)),
    ("Mastercard 2-series", card("2221", 16)), ("Amex", card("37", 15)),
])
def test_cards_of_every_brand_and_length_after_a_card_word(brand: str, number: str) -> None:
    text = f"Please block my card {number} today."
    assert values(text, [(s, e) for s, e, _ in find_cards(text)]) == [number], brand


def test_cards_need_luhn_and_short_or_odd_ones_need_a_card_word() -> None:
    maestro, visa = card("5018", 12), card("4", 16)
    grouped = f"{visa[:4]} {visa[4:8]} {visa[8:12]} {visa[12:]}"
    assert find_cards(f"ref {maestro}") == []                     # 12 digits without a card word
    assert len(find_cards(f"ref {visa}")) == 1                    # 16 digits, issuer class 4, Luhn
    assert len(find_cards(f"paid with {grouped}")) == 1           # grouped by spaces
    broken = visa[:-1] + str((int(visa[-1]) + 1) % 10)
    assert find_cards(f"card {broken}") == []                     # Luhn fails
    assert find_cards(f"card {grouped[:9]}-{grouped[10:]}") == []  # mixed separators: two numbers
    assert find_cards("order 1234567890123456789012") == []        # longer than 19 digits


def test_national_phones_are_found_after_a_cue_word_within_the_regions() -> None:
    cues = PhoneCues(DEFAULT_PHONE_CUES, ["US", "GB", "DE", "IN", "BR"])
    for text, number in [("call me on 76 177 296", "76 177 296"), ("Mobile: 412 8721", "412 8721"),
                         ("my phone is 848-506-9506", "848-506-9506"), ("Phone:\n070 4493 5104", "070 4493 5104"),
                         ("31 75 62 88 office", "31 75 62 88")]:
        assert values(text, cues.find(text)) == [number], text
    assert cues.find("we shipped 76 177 296 units") == []   # no cue word
    assert cues.find("call me at 2024") == []               # too short for a phone
    us_only = PhoneCues(DEFAULT_PHONE_CUES, ["US"])
    assert us_only.find("call me on 76 177 296") == []      # 8 digits: no possible US length
    assert PhoneCues([], ["US"]).find("call me on 415 555 0132") == []  # cues turned off


@pytest.mark.parametrize(("text", "address"), [
    ("Ship it to 1600 Pennsylvania Avenue NW, Washington, DC 20500 please.",
     "1600 Pennsylvania Avenue NW, Washington, DC 20500"),
    ("I live at 10 Downing St, London SW1A 2AA.", "10 Downing St, London SW1A 2AA"),
    ("Send it to 221B Baker Street Apt. 4, London", "221B Baker Street Apt. 4, London"),
    ("Meet me at Lindenstraße 40, 10969 Berlin.", "Lindenstraße 40, 10969 Berlin"),
    ("She lives at 12 Rue de la Paix, Paris", "12 Rue de la Paix, Paris"),
    ("Our office: Via Roma 12, Milano", "Via Roma 12, Milano"),
    ("Ken lives at ul. Północna 73, Suwałki", "ul. Północna 73, Suwałki"),
    ("He moved to Landsberger Allee 2 in May", "Landsberger Allee 2"),
    ("The bus stops at Fynshovedvej 34", "Fynshovedvej 34"),
    ("Address:\n8906 Parmova 110 Apt. 883\nFreeport, NY 56349\nMobile: 555 0100",
     "8906 Parmova 110 Apt. 883\nFreeport, NY 56349"),
    ("Write to P.O. Box 131, Wondelgem", "P.O. Box 131, Wondelgem"),
    ("Return it to PSC 1195, Box 5372\nAPO AE 44634 by Friday.", "PSC 1195, Box 5372\nAPO AE 44634"),
    ("> Maria\n> 9791 Locketorp 9\n> Apt. 748\n> SÖDERBÄRK\n> Sweden 31215",
     "9791 Locketorp 9\n> Apt. 748\n> SÖDERBÄRK\n> Sweden 31215"),
    ("I live at Kooli 11, Tartu", "Kooli 11, Tartu"),
])
def test_street_addresses_us_and_european_forms_whole(text: str, address: str) -> None:
    assert values(text, [(s, e) for s, e, _ in find_addresses(text)]) == [address]


def test_no_address_in_products_versions_and_dates() -> None:
    for text in ["Upgrade to Windows 11 and Python 3.11 on 20 nodes.", "Read Chapter 5 of the book.",
                 "Compare Llama 3.1 8B with Mistral 7B.", "The meeting is on May 5 in Room 12.",
                 "Order 12345 shipped on 2024-05-01.", "We use GPT 4 daily; the iPhone 15 too."]:
        assert find_addresses(text) == [], text


def test_name_spans_are_trimmed_at_field_separators_not_dropped() -> None:
    cases = {'Zarita: "Who': "Zarita", "Name: Dana Harding": "Dana Harding", "Dana Harding\nEmail": "Dana Harding",
             "By:    Alphonsine Coupart": "Alphonsine Coupart", "Ticket|Jonathan": "Jonathan", "Name\nEmail": ""}
    for span, kept in cases.items():
        start, end = trim_name(span, 0, len(span))
        assert span[start:end] == kept, span


def test_warden_up_redacts_pii_at_the_examples_threshold(tmp_path: Path) -> None:
    from proxy.embedded import PII_REDACT_THRESHOLD, embedded_settings

    example = yaml.safe_load((Path(__file__).parents[2] / "examples" / "warden.yaml").read_text())
    redact = [r for r in example["policy"]["rules"] if r.get("detector") == "pii" and r["action"] == "redact"]
    assert [r["threshold"] for r in redact] == [PII_REDACT_THRESHOLD] == [0.4]  # phone, bank, passport score 0.4
    settings = embedded_settings("http://127.0.0.1:9", 8080, "127.0.0.1", tmp_path)
    rules = [r for r in settings.policy.rules if r.detector == "pii"]
    assert all(r.threshold == PII_REDACT_THRESHOLD for r in rules)
