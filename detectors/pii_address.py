"""Street addresses (US and European forms), found by their shape: pure functions, no presidio.

spaCy's small model tags a city or a country, rarely a street and never the house number,
apartment and postcode around it, so a redacted address kept most of what locates a person.
An address is recognised by its *anchor* and grown to its whole:

  * anchors: a street type after the name (US/UK: "221 Baker Street", "12 Oak Ave"), a street
    type before it (Romance, Polish, Greek...: "Rue de Lyon 3", "Via Roma 12", "ul. Polna 7"),
    a street word as a compound suffix or a word of its own (German, Dutch, Nordic, Finnish,
    Hungarian...: "Lindenstrasse 40", "Hudevad Byvej 50", "Nagytétényi út 86."), a post-office
    box ("P.O. Box 131"), a US military address ("PSC 1195, Box 5372 APO AE 44634");
  * a house number is required beside a street anchor, except for a spelled-out US street type
    after capitalised name words ("on Thomsen Mountain Street");
  * a name and a number with no street word ("Kooli 11") count only between a house number and
    it ("998 Kooli 11"), before an apartment or suite, or after an address cue word ("I live
    at", "address:", "sent to") - "Windows 11" and "Python 3" have none of those;
  * the tail: apartment, suite and unit designators, then up to a few lines of city, region,
    state code, country and postcode, stopping at a lowercase word, a field label ("Mobile:"),
    a sentence end or another number that is not a postcode.

Findings are LOCATION (what a policy already treats as a place) with the address recognizer
named in the explanation; a strong shape scores above spaCy's 0.85, so a name the NER model
found inside an address ("Rue Platon") is shadowed by it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

STRONG = 0.9   # an anchor with its house number, a P.O. box, a military address
WEAK = 0.6     # a spelled-out US street type with no number ("Main Street")

# USPS Publication 28 street suffixes (the common ones) and their abbreviations, and UK forms.
US_TYPES = frozenset([
    "street", "st", "str", "avenue", "ave", "av", "road", "rd", "lane", "ln", "drive", "dr", "boulevard", "blvd",
    "court", "ct", "place", "pl", "way", "terrace", "ter", "parkway", "pkwy", "circle", "cir", "highway", "hwy",
    "square", "sq", "crescent", "cres", "close", "grove", "gardens", "row", "mews", "trail", "trl", "alley", "aly",
    "plaza", "plz", "loop", "path", "pike", "walk", "summit", "smt", "green", "port", "prt", "inlet", "inlt",
    "mountain", "mtn", "island", "isle", "islands", "isls", "ridge", "rdg", "heights", "hts", "hill", "hl", "hills",
    "park", "crossing", "xing", "lake", "lk", "creek", "crk", "valley", "vly", "village", "vlg", "harbor", "hbr",
    "haven", "hvn", "meadow", "meadows", "mdws", "mill", "mills", "bridge", "brg", "brook", "brk", "causeway", "cswy",
    "cliff", "clf", "corner", "cor", "expressway", "expy", "falls", "fls", "ferry", "fry", "forest", "frst", "fort",
    "ft", "freeway", "fwy", "glen", "gln", "gateway", "gtwy", "hollow", "holw", "knoll", "knl", "landing", "lndg",
    "manor", "mnr", "motorway", "orchard", "orch", "ranch", "rnch", "rapids", "rpds", "shoal", "shore", "shores",
    "spur", "stream", "strm", "throughway", "trace", "trce", "turnpike", "tpke", "vista", "vis", "wells", "wls"
])
# Spelled-out types that make a street with no house number ("Thomsen Mountain Street").
US_SPELLED = frozenset({"street", "avenue", "road", "lane", "drive", "boulevard", "court", "terrace",
                        "parkway", "highway", "crescent", "close", "square"})
# Street types written before the name.
PREFIX_TYPES = frozenset([
    "rue", "avenue", "av", "boulevard", "bd", "bld", "chemin", "allée", "allee", "place", "quai", "impasse", "route",
    "cours", "via", "viale", "piazza", "piazzale", "corso", "largo", "vicolo", "contrada", "calle", "avenida", "avda",
    "paseo", "plaza", "carrer", "camino", "carretera", "ronda", "travesía", "rua", "travessa", "praça", "praca",
    "estrada", "alameda", "ul", "ulica", "al", "aleja", "plac", "os", "osiedle", "strada", "str", "bulevardul",
    "calea", "odos", "leoforos", "οδός", "λεωφόρος", "ulitsa", "ulitsy", "prospekt", "ulice", "náměstí", "namesti",
    "třída", "trg", "ulica", "cesta", "ulice", "rruga", "sokak", "sokağı", "cadde", "caddesi"
])
# Street words of their own after the name ("Landsberger Allee", "Gosposka ulica", "Piroska u.").
SUFFIX_WORDS = frozenset([
    "straße", "strasse", "str", "gasse", "weg", "allee", "platz", "damm", "ufer", "chaussee", "steig", "pfad",
    "straat", "laan", "weg", "plein", "gracht", "kade", "singel", "dijk", "dreef", "gata", "gatan", "vägen", "väg",
    "gränd", "gade", "vej", "allé", "stræde", "vei", "veien", "vegen", "tie", "katu", "kuja", "polku", "utca", "u",
    "út", "tér", "körút", "krt", "rakpart", "rkp", "köz", "sor", "sétány", "ulica", "ulice", "cesta", "iela", "gatvė",
    "tänav"
])
# ...and the same as the end of one compound word ("Lindenstrasse", "Fynshovedvej", "Keskiortentie").
SUFFIXES = ("straße", "strasse", "str.", "gasse", "weg", "allee", "platz", "damm", "ufer", "chaussee",
            "straat", "laan", "plein", "gracht", "kade", "singel", "dreef", "gatan", "gata", "vägen",
            "gränd", "gade", "vej", "stræde", "veien", "vegen", "katu", "kuja", "polku", "tie", "utca",
            "tänav")
UNIT_WORDS = frozenset({"apt", "apartment", "suite", "ste", "unit", "flat", "floor", "fl", "room", "rm",
                        "bldg", "building", "box", "dept", "#", "no", "nr", "piso", "étage", "etage", "wohnung",
                        "lgh", "top", "stiege", "tür", "door"})
CONNECTORS = frozenset({"de", "del", "della", "delle", "di", "da", "do", "dos", "das", "du", "des", "la", "le",
                        "les", "el", "von", "van", "der", "den", "am", "an", "im", "auf", "pri", "nad", "pod",
                        "na", "sur", "sous", "en", "y", "i", "e", "al", "bin", "ibn", "ter", "upon", "and", "&"})
_NUMBER = re.compile(r"\d{1,6}[a-zA-Z]?(?:[-/]\d{1,4}[a-zA-Z]?)?\.?")
_POSTCODE = re.compile(r"\d{3,6}(?:-\d{3,4})?|\d{2}-\d{3}|[A-Z]{1,2}-\d{4,5}")
_POSTCODE_TWO = re.compile(r"[A-Z]{1,2}\d[A-Z\d]? \d[A-Z]{2}\b|\d{4} ?[A-Z]{2}\b|[A-Z]\d[A-Z] \d[A-Z]\d\b")
_TOKEN = re.compile(r"\n|[^\W_]+(?:['’.\-][^\W_]+)*\.?|[^\s\w]")
_MILITARY = re.compile(
    r"(?:(?:PSC|CMR|Unit)\s+\d{3,5},?\s+Box\s+\d{3,5}|(?:USNS|USS|USCGC)\s+[A-Z][\w.-]*(?:[ \t]+[A-Z][\w.-]*)?)"
    r"\s*\n?\s*(?:APO|FPO|DPO)\s+(?:AA|AE|AP)\s+\d{5}(?:-\d{4})?")
_PO_BOX = re.compile(r"\b(?:P\.?\s?O\.?|Post\s+Office)\s*Box\s+\d{1,6}\b|\bPostfach\s+\d{1,6}\b", re.IGNORECASE)
# Words that say an address follows (within a few words): "lives at", "address:", "ship it to".
_CUE = re.compile(r"\b(?:address(?:es)?|adresse|live[sd]?|living|located|location|ship(?:ped|ping)?|deliver(?:ed|y)?|"
                  r"sen[dt]|post(?:ed)?|mail(?:ed)?|meet|moved?|resides?|residing|visit|office|"
                  r"offices|headquarters|stay(?:ing)?|return)\b[^.!?\n]{0,24}$", re.IGNORECASE)
# a full stop after a number, a postcode or a long word ends the sentence, not an abbreviation ("St.")
_SENTENCE_END = re.compile(r"(?:\d|[^\W\d_]{5,}|[A-Z\d]{3})\.$")
_LINE_PREFIX = re.compile(r"[^\w\s]{1,4}")  # quoting marks at a line start: "> ", "}} ", "??? "
# Anchors, for a C-speed check before any token is looked at.
_ANY_ANCHOR = re.compile(
    r"\b(?:" + "|".join(sorted(map(re.escape, US_TYPES | PREFIX_TYPES | SUFFIX_WORDS), key=len, reverse=True))
    + r")\b|(?:" + "|".join(map(re.escape, SUFFIXES)) + r")\b|\bbox\b|\b(?:APO|FPO|DPO)\b|\d",
    re.IGNORECASE)

Token = tuple[str, int, int]  # text, start, end


def _key(word: str) -> str:
    return word.casefold().rstrip(".")


def _is_cap(word: str) -> bool:
    return word[:1].isupper() or (word[:1].isdigit() and bool(re.fullmatch(r"\d+(?:st|nd|rd|th)", word)))


def _is_number(word: str) -> bool:
    return bool(_NUMBER.fullmatch(word))


def _is_suffix_compound(word: str) -> bool:
    low = word.casefold()
    return any(low.endswith(s) and len(low) - len(s) >= 3 and low[:len(low) - len(s)].isalpha() for s in SUFFIXES)


class _Scan:
    """The tokens of one text and the growing of one address from an anchor."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[Token] = [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]

    def word(self, i: int) -> str:
        return self.tokens[i][0] if 0 <= i < len(self.tokens) else ""

    def names_before(self, i: int, most: int = 4) -> int:
        """Index of the first capitalised name word in the run ending just before token i (i if none)."""
        start, taken = i, 0
        while start - 1 >= 0 and taken < most:
            w = self.word(start - 1)
            if _is_cap(w) and not _is_number(w) and _key(w) not in UNIT_WORDS:
                start, taken = start - 1, taken + 1
            elif _key(w) in CONNECTORS and start - 2 >= 0 and _is_cap(self.word(start - 2)) and start < i:
                start -= 1
            else:
                break
        return start

    def names_after(self, i: int, most: int = 5) -> int:
        """Index just past the run of name words starting at token i."""
        end, taken = i, 0
        while end < len(self.tokens) and taken < most:
            w = self.word(end)
            if end > i and _POSTCODE_TWO.match(self.text, self.tokens[end][1]):
                break
            if _is_cap(w) and not _is_number(w) and _key(w) not in UNIT_WORDS:
                end, taken = end + 1, taken + 1
            elif _key(w) in CONNECTORS and self._cap_after_connectors(end):
                end += 1
            else:
                break
        return end

    def _cap_after_connectors(self, i: int) -> bool:
        """Whether the connectors from token i ("de la") lead to a capitalised word ("Rue de la Paix")."""
        while _key(self.word(i)) in CONNECTORS:
            i += 1
        return _is_cap(self.word(i)) and not _is_number(self.word(i))

    def numbers_before(self, i: int) -> int:
        start = i
        while start - 1 >= 0 and i - start < 2 and _is_number(self.word(start - 1)):
            start -= 1
        return start

    def cue_before(self, i: int) -> bool:
        at = self.tokens[i][1]
        return bool(_CUE.search(self.text[max(0, at - 48):at].rstrip()))


def _cores(scan: _Scan) -> Iterator[tuple[int, int, float]]:
    """(first token, token after the last, score) of each street found by its anchor."""
    n = len(scan.tokens)
    for i, (word, _, _) in enumerate(scan.tokens):
        key = _key(word)
        first = scan.names_before(i)
        if key in US_TYPES and first < i:
            lead = scan.numbers_before(first)
            if lead < first:
                yield lead, i + 1, STRONG
            elif key in US_SPELLED and word[:1].isupper():
                yield first, i + 1, WEAK
        elif key in US_SPELLED and _is_number(scan.word(i - 1)) and scan.names_before(i - 1) < i - 1:
            yield scan.numbers_before(scan.names_before(i - 1)), i + 1, STRONG  # "Rahu 37 street"
        elif key in PREFIX_TYPES and (word[:1].isupper() or word.endswith(".")) and i + 1 < n:
            end = scan.names_after(i + 1)
            if end == i + 1:
                continue
            lead = scan.numbers_before(i)
            if end < n and _is_number(scan.word(end)):
                yield lead, end + 1, STRONG
            elif lead < i:
                yield lead, end, STRONG
        elif ((key in SUFFIX_WORDS and i > 0 and _is_cap(scan.word(i - 1)))
              or (_is_cap(word) and _is_suffix_compound(word))):
            first = scan.names_before(i, most=3) if key in SUFFIX_WORDS else i
            lead = scan.numbers_before(first)
            if i + 1 < n and _is_number(scan.word(i + 1)):
                yield lead, i + 2, STRONG
            elif lead < first:
                yield lead, i + 1, STRONG
        elif _is_number(word) and i > 0 and _is_cap(scan.word(i - 1)) and not _is_number(scan.word(i - 1)):
            first = scan.names_before(i, most=3)  # a name and a number with no street word: "Kooli 11"
            lead = scan.numbers_before(first)
            unit_next = _key(scan.word(i + 1 + (scan.word(i + 1) in (",", "\n")))) in UNIT_WORDS
            if lead < first or unit_next or scan.cue_before(first):
                yield lead, i + 1, STRONG


def _tail(scan: _Scan, end: int) -> int:
    """Token index past the apartment, city, region, country and postcode that follow a street."""
    n, lines, taken = len(scan.tokens), 0, 0
    while end < n and taken < 10:
        j = end
        while j < n and scan.word(j) in (",", "\n"):
            if scan.word(j) == "\n":
                lines += 1
                if j + 1 < n and _LINE_PREFIX.fullmatch(scan.word(j + 1)):
                    j += 1
                    while j + 1 < n and _LINE_PREFIX.fullmatch(scan.word(j + 1)):
                        j += 1
            j += 1
        if j >= n or lines > 4:
            break
        word, key = scan.word(j), _key(scan.word(j))
        previous = scan.word(end - 1)
        after_sentence = previous.endswith(".") and _is_number(previous.rstrip(".")) and j == end
        if key in UNIT_WORDS and (_is_number(scan.word(j + 1)) or scan.word(j + 1) == "#"):
            step = j + 2 if scan.word(j + 1) != "#" else j + 3
        elif key in ("p.o", "po") and _key(scan.word(j + 1)) == "box":
            step = j + 3
        elif (two := _POSTCODE_TWO.match(scan.text, scan.tokens[j][1])) and not after_sentence:
            stop = two.end()
            step = next((k for k in range(j, n) if scan.tokens[k][1] >= stop), n)
        elif _POSTCODE.fullmatch(word) and not _is_number(scan.word(j + 1)) and not after_sentence:
            step = j + 1
        elif word == "(" and _is_cap(scan.word(j + 1)) and scan.word(j + 2) == ")":
            step = j + 3
        elif _is_cap(word) and not after_sentence and scan.word(j + 1) != ":" and word not in ("I", "I'm"):
            step = scan.names_after(j, most=4)
            if step < n and scan.word(step) == ":":
                break
        else:
            break
        end, taken = step, taken + 1
    return end


def find_addresses(text: str) -> list[tuple[int, int, float]]:
    """(start, end, score) of every street address in the text, longest first where they overlap."""
    found: list[tuple[int, int, float]] = [(m.start(), m.end(), STRONG) for m in _MILITARY.finditer(text)]
    if not _ANY_ANCHOR.search(text):
        return found
    scan = _Scan(text)
    for box in _PO_BOX.finditer(text):
        first = next(k for k, t in enumerate(scan.tokens) if t[2] > box.start())
        last = next((k for k, t in enumerate(scan.tokens) if t[1] >= box.end()), len(scan.tokens))
        lead = scan.numbers_before(first)
        found.append((scan.tokens[lead][1], scan.tokens[_tail(scan, last) - 1][2], STRONG))
    for first, after, score in _cores(scan):
        end = _tail(scan, after)
        found.append((scan.tokens[first][1], scan.tokens[end - 1][2], score))
        found = [(s, e - 1 if text[e - 1] == "," or _SENTENCE_END.search(text, s, e) else e, v) for s, e, v in found]
    found.sort(key=lambda f: (f[0], -f[1]))
    merged: list[tuple[int, int, float]] = []
    for start, end, score in found:
        if merged and start < merged[-1][1]:
            s, e, v = merged[-1]
            merged[-1] = (s, max(e, end), max(v, score))
        else:
            merged.append((start, end, score))
    return merged
