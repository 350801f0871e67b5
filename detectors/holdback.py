"""Where a stream may be cut: how much of a text's tail a detector's findings could still grow from.

A stream enforcer releases text as soon as no finding can still include it, so it must know, for
the text seen so far, the shortest tail that could be the start (or the unfinished middle) of an
entity. Only the detector knows its own shapes, so each one declares it (`HoldsBack` in
detectors/base.py); these are the rules the built-in detectors use. Each returns a number of
trailing characters of the (normalised) text it is given; the enforcer holds the largest any
detector asks for, never more than its window. A rule that is too generous costs latency; one that
is too tight leaks, so each one is a superset of what its detector's patterns can match:

  * `token_tail`: the last run of non-whitespace characters, unless the text ends in whitespace.
    Every secret shape, e-mail address, URL, IP address and number is such a run, and a `\\b` at
    its end is not settled until the next character arrives;
  * `literal_tail`: the longest suffix that is a proper prefix of a literal that contains spaces
    (a canary phrase, a PEM header), which the token rule would release word by word;
  * `pii_tail`: the token rule, plus a run of tokens at the tail that a PII finding may still
    extend: capitalised words (a name or place NER may lengthen, with connectors such as "van" or
    "of" between them), numbers and separator-only tokens (phone numbers, card numbers, IBANs and
    addresses are digit groups with spaces and punctuation between). A lowercase word ends a run,
    and so does a blank line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from detectors.base import Detector, HoldsBack

TAIL_LIMIT = 256  # characters of the tail a rule looks at: the enforcer's window is smaller still
_TOKEN = re.compile(r"\S+")
# Lowercase words that can stand inside a name or place ("Ludwig van Beethoven", "Bank of America").
CONNECTORS = frozenset({"of", "van", "von", "de", "der", "den", "da", "del", "della", "di", "du", "la", "le",
                        "bin", "ibn", "al", "el", "y", "and", "&"})
_OPENING = "\"'“‘([{<"


def token_tail(text: str) -> int:
    """The unfinished last token: characters after the last whitespace, 0 if the text ends in it."""
    if not text or text[-1].isspace():
        return 0
    match = re.search(r"\S+\Z", text[-TAIL_LIMIT:])
    return len(match.group()) if match else 0


def literal_tail(text: str, literals: Iterable[str]) -> int:
    """The longest suffix of `text` that is a proper prefix of one of `literals`."""
    best = 0
    for literal in literals:
        if not literal:
            continue
        window = text[-(len(literal) - 1):] if len(literal) > 1 else ""
        at = window.find(literal[0])
        while at != -1:
            if literal.startswith(window[at:]):
                best = max(best, len(window) - at)
                break  # the first match is the longest one for this literal
            at = window.find(literal[0], at + 1)
    return best


def _extends(token: str) -> bool:
    """Whether a token can be part of a PII finding that a next token may extend."""
    word = token.lstrip(_OPENING)
    if not word or not any(c.isalpha() for c in word):
        return True  # a number, or punctuation between the parts of one
    return word[0].isupper() or any(c.isdigit() for c in word)


def pii_tail(text: str) -> int:
    """The tail a PII finding may still grow from: an unfinished token, or a run of capitalised
    words, numbers and separators (with connectors inside) that reaches the end of the text."""
    tail = text[-TAIL_LIMIT:]
    tokens = list(_TOKEN.finditer(tail))
    if not tokens:
        return 0
    start = len(tail) if tail[-1].isspace() else tokens[-1].start()
    index = len(tokens) - 1
    while index >= 0:
        token = tokens[index]
        after = tokens[index + 1].start() if index + 1 < len(tokens) else len(tail)
        if "\n\n" in tail[token.end():after].replace("\r", "").replace(" ", "").replace("\t", ""):
            break  # a blank line ends any entity
        word = token.group()
        if _extends(word):
            start = min(start, token.start())
        elif not (word.lower() in CONNECTORS and index > 0 and _extends(tokens[index - 1].group())):
            break
        index -= 1
    return len(tail) - start


def hold_for(detectors: Iterable[Detector], text: str) -> int:
    """The longest tail any of `detectors` asks for; one that declares nothing gets all of it (the
    enforcer's window then bounds the hold, as it did before detectors could say)."""
    hold = 0
    for detector in detectors:
        wanted = detector.holdback(text) if isinstance(detector, HoldsBack) else len(text)
        hold = max(hold, min(len(text), max(0, wanted)))
        if hold >= len(text):
            break
    return hold
