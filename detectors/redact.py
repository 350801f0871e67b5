"""Redact detected spans in a text: presidio-anonymizer's operators, consistent within one response.

The proxy calls this on its event loop for short texts (a message, a stream's hold-back window),
so it is pure Python and imports neither spaCy nor presidio: importing `presidio_anonymizer`
imports `presidio_analyzer` through its Azure operator, and with it spaCy and, when installed,
transformers and torch (seconds, hundreds of MB). The operators keep presidio-anonymizer's names,
parameters and outputs (tests/detectors/test_redact.py checks them against presidio's own):

  * `replace`: `new_value`, or `<ENTITY>`; with `numbered: true`, `<ENTITY_1>`, `<ENTITY_2>`, ...
    where the same value gets the same number for the life of the `Redactor`;
  * `mask`: `masking_char`, `chars_to_mask` (default: all), `from_end`;
  * `hash`: `hash_type` (sha256 or sha512) over the value plus the deployment's salt, so the same
    value hashes alike across responses (joinable in audit logs) but not across deployments;
  * `redact` (remove) and `keep`.

One `Redactor` serves one response or stream: numbering is consistent across all its `redact`
calls. It never holds a raw value: numbers are keyed by an HMAC of the value under a key made
for this Redactor alone, so even its memory cannot be matched against guessed values later.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_KEY = "DEFAULT"  # presidio's key for "every other entity"
MIN_SALT_BYTES = 16  # presidio-anonymizer refuses shorter salts for `hash`


class SpanLike(Protocol):
    """What redaction needs of a finding: protocol.Span and base.Finding both qualify."""

    @property
    def label(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def start(self) -> int | None: ...
    @property
    def end(self) -> int | None: ...


class Operator(BaseModel):
    """One entity's operator, as presidio-anonymizer's OperatorConfig: a `type` and its params."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["replace", "mask", "hash", "redact", "keep"] = "replace"
    new_value: str | None = None
    numbered: bool = False
    masking_char: str = Field("*", min_length=1, max_length=1)
    chars_to_mask: int | None = Field(None, ge=0, description="mask: how many characters; default all")
    from_end: bool = False
    hash_type: Literal["sha256", "sha512"] = "sha256"

    @model_validator(mode="after")
    def _consistent(self) -> Operator:
        if self.numbered and (self.type != "replace" or self.new_value is not None):
            raise ValueError("numbered applies to replace without new_value (it makes <ENTITY_n>)")
        return self


class OperatorConfigLike(Protocol):
    """presidio_anonymizer.entities.OperatorConfig, which `as_operator` takes without importing it."""

    @property
    def operator_name(self) -> str: ...
    @property
    def params(self) -> Mapping[str, Any] | None: ...


OperatorLike = Operator | Mapping[str, Any] | OperatorConfigLike


def as_operator(config: Any) -> Operator:
    """An Operator from itself, a dict (`{"type": "mask", ...}`), or a presidio OperatorConfig."""
    if isinstance(config, Operator):
        return config
    if hasattr(config, "operator_name"):  # presidio_anonymizer.entities.OperatorConfig, without importing it
        config = {"type": config.operator_name, **(config.params or {})}
    data = dict(config)
    if "salt" in data:
        raise ValueError("hash salt is per deployment: give it to Redactor(salt=...), not to one operator")
    return Operator.model_validate(data)


def merge(spans: Iterable[tuple[str, float, int, int]]) -> list[tuple[str, float, int, int]]:
    """Overlapping spans become one covering them all, labelled by the highest-scoring member."""
    merged: list[tuple[str, float, int, int]] = []
    for label, score, start, end in sorted(spans, key=lambda s: (s[2], -s[3])):
        if start >= end:
            continue
        if merged and start < merged[-1][3]:
            m_label, m_score, m_start, m_end = merged[-1]
            if score > m_score:
                m_label, m_score = label, score
            merged[-1] = (m_label, m_score, m_start, max(m_end, end))
        else:
            merged.append((label, score, start, end))
    return merged


def _normalize(value: str) -> str:
    """Spacing and punctuation variants of one value share a number: (415) 555-0132 = 415-555-0132."""
    return "".join(ch for ch in value.casefold() if not ch.isspace() and ch not in "-().")


class Redactor:
    """Per-entity operators with `DEFAULT` for the rest (itself `replace` unless given)."""

    def __init__(self, operators: Mapping[str, OperatorLike] | None = None, salt: bytes = b"") -> None:
        self._operators = {label: as_operator(op) for label, op in (operators or {}).items()}
        self._default = self._operators.pop(DEFAULT_KEY, Operator())
        hashing = any(op.type == "hash" for op in (*self._operators.values(), self._default))
        if hashing and len(salt) < MIN_SALT_BYTES:
            raise ValueError(f"hash needs a deployment salt of at least {MIN_SALT_BYTES} bytes")
        self._salt = salt
        self._key = os.urandom(32)  # numbering key: this Redactor's alone, never stored
        self._numbers: dict[bytes, int] = {}
        self._counts: dict[str, int] = {}

    def operator(self, label: str) -> Operator:
        return self._operators.get(label, self._default)

    def replacement(self, label: str, value: str) -> str:
        op = self.operator(label)
        if op.type == "keep":
            return value
        if op.type == "redact":
            return ""
        if op.type == "mask":
            count = len(value) if op.chars_to_mask is None else min(len(value), op.chars_to_mask)
            if op.from_end:
                return value[:len(value) - count] + op.masking_char * count
            return op.masking_char * count + value[count:]
        if op.type == "hash":
            return hashlib.new(op.hash_type, value.encode() + self._salt).hexdigest()
        if op.numbered:
            return f"<{label}_{self._number(label, value)}>"
        return op.new_value if op.new_value else f"<{label}>"

    def _number(self, label: str, value: str) -> int:
        digest = hmac.new(self._key, f"{label}\0{_normalize(value)}".encode(), hashlib.sha256).digest()
        number = self._numbers.get(digest)
        if number is None:
            number = self._counts[label] = self._counts.get(label, 0) + 1
            self._numbers[digest] = number
        return number

    def redact(self, text: str, spans: Iterable[SpanLike], *, offset: int = 0) -> str:
        """`text` with every span replaced by its entity's operator; overlapping spans are merged.

        Span offsets index a string in which `text` starts at position `offset`: 0 when they were
        found in `text` itself; `len(context)` when they were found in `context + text` (a stream's
        already released tail plus its hold-back window); `-w` when they were found in `text[w:]`.
        Spans outside `text` are ignored, and a span crossing its edge is cut at the edge, so no
        visible part of a finding survives.
        """
        local = []
        for span in spans:
            if span.start is None or span.end is None:
                continue
            start, end = max(span.start - offset, 0), min(span.end - offset, len(text))
            if start < end:
                local.append((span.label, span.score, start, end))
        if not local:
            return text
        pieces, at = [], 0
        for label, _, start, end in merge(local):
            pieces.append(text[at:start])
            pieces.append(self.replacement(label, text[start:end]))
            at = end
        pieces.append(text[at:])
        return "".join(pieces)
