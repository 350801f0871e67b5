"""The normalised view detectors read, with a map from its offsets back to the original text.

Why: a value hidden by Unicode tricks (zero-width characters or soft hyphens between its letters,
bidi controls, Cyrillic or Greek look-alikes, fullwidth or mathematical letters, combining marks
as noise) no longer matches a secret's shape, a canary, an injection phrase or a PII pattern, and
a model reads it as unknown words. In the view:

  * NFKC folds compatibility forms (fullwidth, mathematical alphanumerics, ligatures, odd spaces);
  * format characters (Unicode category Cf: zero-width characters, soft hyphen, bidi controls,
    word joiner, byte-order mark, tag characters), variation selectors and Hangul fillers vanish;
  * combining marks that do not compose with their letter under NFKC (strikethrough, Zalgo) vanish;
  * `CONFUSABLES`, a compact table in the spirit of Unicode's confusables.txt (UTS #39), folds a
    letter of another script to the ASCII letter it looks like, and typographic dashes and quotes
    to ASCII. Folding is per character, never per word, so the same character always folds the
    same way: the price is that genuine Cyrillic or Greek text reaches detectors partly
    transliterated (harmless to the English patterns and models Warden ships; a multilingual
    model would read it worse).

The text is cut into clusters (a character, its marks, and format characters between them) and
each cluster is normalised on its own, so every view character comes from one cluster and
`View.span` maps any view span to the original clusters it came from: the original span starts at
the first visible character and ends after the last, so invisible characters inside a value are
cut with it and the ones just outside are not. The common case, pure ASCII, is the identity and
costs one `str.isascii()`; in mixed text the ASCII runs are copied as identity segments and only
the non-ASCII runs are looked at character by character.

`classifier_view` adds what only a whole-text classifier may see (it has no offsets): leetspeak
folded (`y0u 1d10t`) and spaced letters joined (`i d i o t`).
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass
from types import MappingProxyType

_CYRILLIC = ("АAВBСCЕEНHІIЈJКKМMОOРPЅSТTХXУYҮYӀIԚQԜW"
             "аaсcеeһhіiјjоoрpѕsхxуyԁdԛqԝwӏlԍGԌG")
_GREEK = "ΑAΒBΕEΖZΗHΙIΚKΜMΝNΟOΡPΤTΥYΧXοoνvαaιiκkρpυuχxγyϲcϳjϜF"
_OTHER = "ıiȷjɑaɡgɩiօoսuհhոnꓲIꓳOꓚCꓔTꓢS"  # dotless i/j, Latin alphas, Armenian, Lisu
_PUNCT = {"\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2212": "-", "\u2018": "'",
          "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u201c": '"', "\u201d": '"',
          "\u201e": '"', "\u201f": '"', "\u2033": '"'}
# Marks from the combining-diacritics blocks still standing after NFKC composed what it could.
_NOISE_MARKS = (range(0x0300, 0x0370), range(0x1AB0, 0x1B00), range(0x1DC0, 0x1E00), range(0x20D0, 0x2100),
                range(0xFE20, 0xFE30))
# Invisible, but not category Cf: variation selectors, Mongolian ones, Hangul fillers, the grapheme joiner.
_INVISIBLE = frozenset([*map(chr, range(0xFE00, 0xFE10)), *map(chr, range(0xE0100, 0xE01F0)),
                        *map(chr, range(0x180B, 0x1810)), "\u115f", "\u1160", "\u3164", "\uffa0", "\u034f"])


def _pairs(table: str) -> dict[str, str]:
    return {table[i]: table[i + 1] for i in range(0, len(table), 2)}


CONFUSABLES: MappingProxyType[str, str] = MappingProxyType(
    {**_pairs(_CYRILLIC), **_pairs(_GREEK), **_pairs(_OTHER), **_PUNCT})
# Category Cf as of Unicode 15; `_clusters` also asks unicodedata, for characters added since.
_FORMAT = (range(0x00AD, 0x00AE), range(0x0600, 0x0606), range(0x061C, 0x061D), range(0x06DD, 0x06DE),
           range(0x070F, 0x0710), range(0x0890, 0x0892), range(0x08E2, 0x08E3), range(0x180E, 0x180F),
           range(0x200B, 0x2010), range(0x202A, 0x202F), range(0x2060, 0x2065), range(0x2066, 0x2070),
           range(0xFEFF, 0xFF00), range(0xFFF9, 0xFFFC), range(0x110BD, 0x110BE), range(0x110CD, 0x110CE),
           range(0x13430, 0x13440), range(0x1BCA0, 0x1BCA4), range(0x1D173, 0x1D17B), range(0xE0001, 0xE0002),
           range(0xE0020, 0xE0080))
# Every value is one character or None, so a translation that deletes nothing keeps offsets aligned.
# A plain dict, never mutated: str.translate through a mapping proxy is several times slower.
_FOLD: dict[int, str | None] = ({
    **{ord(k): v for k, v in CONFUSABLES.items()},
    **{code: None for block in (*_NOISE_MARKS, *_FORMAT) for code in block},
    **{ord(char): None for char in _INVISIBLE}})
_FOLD_KEYS = frozenset(map(chr, _FOLD))
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


@dataclass(frozen=True, slots=True)
class View:
    """`text` is what detectors read. Segments (parallel tuples) pair view ranges with original
    ranges; `identity` segments map character for character (the text itself, or look-alikes
    folded one for one), the others map as one block (a cluster)."""

    text: str
    original: str
    v_starts: tuple[int, ...] = ()
    v_ends: tuple[int, ...] = ()
    o_starts: tuple[int, ...] = ()
    o_ends: tuple[int, ...] = ()
    identity: tuple[bool, ...] = ()
    changed: bool = False

    def _segment(self, at: int) -> int:
        return max(bisect_right(self.v_starts, at) - 1, 0)

    def start(self, at: int) -> int:
        """The original offset where the view character at `at` begins."""
        if not self.changed:
            return at
        if at >= len(self.text):
            return self.o_ends[-1] if self.o_ends else len(self.original)
        i = self._segment(at)
        return self.o_starts[i] + (at - self.v_starts[i]) if self.identity[i] else self.o_starts[i]

    def end(self, at: int) -> int:
        """The original offset just after the view character at `at - 1`."""
        if not self.changed:
            return at
        if at <= 0:
            return self.o_starts[0] if self.o_starts else 0
        i = self._segment(at - 1)
        return self.o_starts[i] + (at - self.v_starts[i]) if self.identity[i] else self.o_ends[i]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span that the view span [start, end) was made from."""
        start, end = max(0, min(start, len(self.text))), max(0, min(end, len(self.text)))
        if end <= start:
            at = self.start(start)
            return at, at
        return self.start(start), self.end(end)


class _Builder:
    """Collects segments; adjacent identity segments that touch in both texts merge."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.v_at = 0
        self.segments: list[tuple[int, int, int, int, bool]] = []

    def add(self, view: str, o_start: int, o_end: int, identity: bool) -> None:
        if not view:
            return
        v_end = self.v_at + len(view)
        last = self.segments[-1] if self.segments else None
        if identity and last is not None and last[4] and last[1] == self.v_at and last[3] == o_start:
            self.segments[-1] = (last[0], v_end, last[2], o_end, True)
        else:
            self.segments.append((self.v_at, v_end, o_start, o_end, identity))
        self.pieces.append(view)
        self.v_at = v_end


def _clusters(text: str, start: int, end: int, out: _Builder) -> None:
    """Cluster text[start:end] (a non-ASCII run, perhaps with the ASCII letter its first mark sits on)."""
    c_start = c_end = -1
    kept: list[str] = []

    def flush() -> None:
        if c_start < 0:
            return
        raw = text[c_start:c_end]
        folded = unicodedata.normalize("NFKC", "".join(kept)).translate(_FOLD)
        out.add(folded, c_start, c_end, folded == raw or len(raw) == len(folded) == 1)

    for index in range(start, end):
        char = text[index]
        category = unicodedata.category(char)
        if category == "Cf" or char in _INVISIBLE:
            continue  # dropped; inside a cluster only if a mark of it follows
        if category[0] == "M" and c_start >= 0:
            kept.append(char)
            c_end = index + 1
            continue
        flush()
        c_start, c_end, kept = index, index + 1, [char]
    flush()


def normalize(text: str) -> View:
    """The view of `text`; for ASCII text, the text itself with the identity map."""
    if text.isascii():
        return View(text, text)
    if unicodedata.is_normalized("NFKC", text) and not any(
            char in _FOLD_KEYS or unicodedata.category(char)[0] in "CM" for char in set(text) if char > "\x7f"):
        return View(text, text)  # accents, emoji, CJK, other scripts: nothing to fold or drop
    if unicodedata.is_normalized("NFKC", text):
        folded = text.translate(_FOLD)
        if len(folded) == len(text):  # look-alikes only, folded one for one: one aligned segment
            return View(folded, text, (0,), (len(text),), (0,), (len(text),), (True,), True)
    out = _Builder()
    done = 0
    for match in _NON_ASCII.finditer(text):
        start, end = match.span()
        if start > done and unicodedata.category(text[start])[0] == "M":
            start -= 1  # a mark belongs to the ASCII letter before it
        if start > done:
            out.add(text[done:start], done, start, True)
        done = end
        run = text[start:end]
        if unicodedata.is_normalized("NFKC", run):  # most runs: C-speed checks, no per-character loop
            folded = run.translate(_FOLD)
            if len(folded) == len(run):
                out.add(folded, start, end, True)  # look-alikes folded one for one: offsets stay aligned
                continue
            if not folded:
                continue  # only invisible characters
        _clusters(text, start, end, out)
    if done < len(text):
        out.add(text[done:], done, len(text), True)
    view = "".join(out.pieces)
    if view == text:
        return View(text, text)
    v_starts, v_ends, o_starts, o_ends, identity = zip(*out.segments, strict=True) if out.segments else ((),) * 5
    return View(view, text, v_starts, v_ends, o_starts, o_ends, identity, True)


# --- the classifier's view: no offsets, so folds that change lengths are allowed ---

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g", "@": "a",
                       "$": "s", "!": "i", "|": "l", "+": "t"})
# A word that mixes letters with leet characters; ! | + are folded only between other characters.
_LEET_WORD = re.compile(r"(?<![A-Za-z0-9@$!|+])(?:[A-Za-z]+[0-9@$!|+]+|[0-9@$!|+]+[A-Za-z]+)[A-Za-z0-9@$!|+]*")
# Four or more single letters (or leet characters) separated by one space, dot, dash, underscore or star.
_SPACED = re.compile(r"(?<![\w@$])(?:[A-Za-z0-9@$][ ._*\-]){3,}[A-Za-z0-9@$](?![\w@$])")
_SEPARATORS = str.maketrans("", "", " ._*-")


def fold_leet(view: str) -> str:
    """Leetspeak folded inside words that mix letters with digits or symbols (`1gn0re` -> `ignore`);
    one character for one, so offsets into the result are offsets into `view`."""
    return _LEET_WORD.sub(_fold_word, view)


def _fold_word(match: re.Match[str]) -> str:
    word = match.group()
    core = word.strip("!|+")
    at = word.index(core) if core else 0
    return word[:at] + core.translate(_LEET) + word[at + len(core):]


def classifier_view(view: str) -> str:
    """`view` with spaced letters joined and leetspeak folded, for classifiers that score whole texts."""
    return fold_leet(_SPACED.sub(lambda m: m.group().translate(_SEPARATORS), view))
