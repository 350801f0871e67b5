"""Card numbers of every brand and national phone numbers after a cue word: pure functions, no presidio.

Cards. presidio's pattern covers 13 to 17 digits starting 1 and 3-6, so 12-digit Maestro,
19-digit Visa and UnionPay, 15-digit JCB (2131, 1800) and Mastercard's 2-series are missed.
Here any run of 12 to 19 digits (single spaces or dashes between groups) that passes Luhn is a
card when its first digit is an ISO/IEC 7812 card-issuer class (2 to 6; 1 for 15-digit UATP)
and it is 13 digits or more; 12-digit numbers (Maestro only) and other first digits also need
a card word just before ("card 0604 6437 3210"). One in ten random numbers passes Luhn, which is
why the short and unusual ones wait for the word.

Phones. libphonenumber (presidio's PhoneRecognizer) takes a national number only when it is a
valid number of a configured region, so "call me on 76 177 296" or an unassigned area code in
"my number is 848-506-9506" is missed. A phone-shaped run of 6 to 15 digits (and an extension, "x869") right
after a cue word ("call", "phone", "mobile", "tel", "fax", "text", "message", "whatsapp",
"reach") or right before one ("555 0199 mobile") is a phone when its digit count is a possible length in one of the
configured regions (phonenumbers' `is_possible_number`): the cue gates it, the regions bound it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

CARD_WORDS = re.compile(r"\b(?:card|cards|cc|credit|debit|visa|mastercard|amex|maestro|discover|jcb|diners|"
                        r"unionpay|kreditkarte|karte|carte|tarjeta)\b[^.!?\n\d]{0,20}$", re.IGNORECASE)
_CARD_RUN = re.compile(r"(?<![\w+.,/-])(?<!\d[ -])\d(?:[ -]?\d){11,18}(?![\w.,/-]\d|[ -]?\d|\w)")
DEFAULT_PHONE_CUES = ("call", "calling", "called", "phone", "telephone", "tel", "mobile", "cell", "cellphone",
                      "landline", "fax", "text", "texts", "texting", "sms", "message", "messages", "messaging",
                      "voicemail", "whatsapp", "reach", "dial", "ring", "contact", "number", "office", "desk",
                      "hotline", "ph", "mob")
_PHONE_RUN = re.compile(r"(?<![\w+.,/-])(?:\+\d{1,3}[ .-]?)?(?:\(0?\d{1,5}\)[ .-]?)?\d(?:[ .-]?\d){3,14}"
                        r"(?:[ ]?(?:x|ext\.?)[ ]?\d{1,5})?(?![\w/]|[.,-]\d)")
_CUE_BEFORE = r"\b(?:{words})\b[^.!?\d\n]{{0,24}}(?:\n[^\w\n]{{0,4}})?$"
_CUE_AFTER = r"[ \t(-]{{0,3}}(?:{words})\b"


def luhn(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = int(char)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _one_separator(value: str) -> bool:
    """Groups split by one kind of separator only ("4111 1111-1111 1111" is two numbers, not one)."""
    return len(set(re.findall(r"[ -]", value))) <= 1


def find_cards(text: str) -> list[tuple[int, int, str]]:
    """(start, end, why) of every card number; why says which evidence made it one."""
    found = []
    for match in _CARD_RUN.finditer(text):
        value = match.group()
        digits = re.sub(r"\D", "", value)
        if not _one_separator(value) or not luhn(digits) or len(set(digits)) == 1:
            continue
        issuer = digits[0] in "23456" or (digits[0] == "1" and len(digits) == 15)
        if issuer and len(digits) >= 13:
            found.append((match.start(), match.end(), "issuer class, length and Luhn"))
        elif CARD_WORDS.search(text[max(0, match.start() - 40):match.start()]):
            found.append((match.start(), match.end(), "Luhn and a card word before it"))
    return found


class PhoneCues:
    """The cue words and regions of one PII task, compiled once (the runner's options decide both)."""

    def __init__(self, words: Iterable[str], regions: Iterable[str]) -> None:
        alternation = "|".join(sorted((re.escape(w) for w in words if w.strip()), key=len, reverse=True))
        self._before = re.compile(_CUE_BEFORE.format(words=alternation), re.IGNORECASE) if alternation else None
        self._after = re.compile(_CUE_AFTER.format(words=alternation), re.IGNORECASE) if alternation else None
        self.regions = tuple(regions)

    def find(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of every phone-shaped number with a cue word next to it and a possible length."""
        if self._before is None or self._after is None:
            return []
        found = []
        for match in _PHONE_RUN.finditer(text):
            digits = re.sub(r"\D", "", re.split(r"[ ]?(?:x|ext)", match.group())[0])
            if not 6 <= len(digits) <= 15 or len(set(digits)) == 1:
                continue
            before = text[max(0, match.start() - 48):match.start()]
            if not (self._before.search(before) or self._after.match(text, match.end())):
                continue
            if self.possible(digits):
                found.append((match.start(), match.end()))
        return found

    def possible(self, number: str) -> bool:
        import phonenumbers

        for region in self.regions:
            try:
                parsed = phonenumbers.parse(number, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_possible_number(parsed):
                return True
        return False
