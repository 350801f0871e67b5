"""Findings of texts a scanner-backed detector has already scanned, so a text seen again is not sent again.

Chat and agent traffic repeats itself: every request of a conversation carries its earlier turns
(the user's and the model's, which the response scan already read), an agent resends its whole
context on every tool call, and an application sends the same system prompt with every request.
Each message is its own text (proxy/wire `text_slots`), so a repeated message is an exact repeat,
and scanning it again costs the scanner the same NER and model passes for the same findings.

The key is a 128-bit BLAKE2b digest of the text, not the text: the cache keeps no user text (and
findings never quote what they matched). Entries are bounded in number and leave least recently
used first: texts seen once (most answers) pass through and leave, while the ones a conversation
repeats are used again and stay. A stream's windows, which never come back (the client sends the
whole answer back, not its windows), are scanned under `one_off()` and not kept at all: at a few
windows a stream they would otherwise push a human's earlier turns out within seconds. (Keeping a
text only from its second scan, a doorkeeper against one-off texts, cost a conversation of 9 turns
twice the misses in bench.guard --history 8: every earlier turn was scanned twice.) Findings of
another model version never answer: the detector passes its version, and a new one empties the
cache (detectors/scanned.py).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from detectors.base import Finding

Count = Callable[[int, int], None]  # (hits, misses) of one lookup
# Set for the scans a task makes inside `one_off()`; detectors' tasks copy it when the chain starts them.
_ONE_OFF: ContextVar[bool] = ContextVar("warden_scan_one_off", default=False)


@contextlib.contextmanager
def one_off() -> Iterator[None]:
    """Scans made inside are looked up but their findings are not kept (texts that will not recur)."""
    token = _ONE_OFF.set(True)
    try:
        yield
    finally:
        _ONE_OFF.reset(token)


def digest(text: str) -> bytes:
    # surrogatepass: a lone surrogate (which JSON can carry) is still a distinct, hashable text
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class FindingsCache:
    def __init__(self, entries: int, on_lookup: Count | None = None) -> None:
        self.entries = entries
        self.on_lookup = on_lookup
        self._found: OrderedDict[bytes, list[Finding]] = OrderedDict()
        self._version = ""

    def __len__(self) -> int:
        return len(self._found)

    def lookup(self, version: str, texts: list[str]) -> tuple[list[bytes], list[list[Finding] | None]]:
        """(each text's key, its cached findings or None); findings of another model version never answer."""
        if version != self._version:
            self._found.clear()
            self._version = version
        keys = [digest(text) for text in texts]
        found: list[list[Finding] | None] = []
        for key in keys:
            row = self._found.get(key)
            if row is not None:
                self._found.move_to_end(key)
            found.append(row)
        if self.on_lookup is not None:
            misses = found.count(None)
            self.on_lookup(len(found) - misses, misses)
        return keys, found

    def store(self, version: str, keys: list[bytes], rows: list[list[Finding]]) -> None:
        if version != self._version or _ONE_OFF.get():  # the model changed meanwhile, or a one-off text
            return
        for key, row in zip(keys, rows, strict=True):
            self._found[key] = row
            self._found.move_to_end(key)
        while len(self._found) > self.entries:
            self._found.popitem(last=False)
