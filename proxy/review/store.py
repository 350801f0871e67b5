"""What review keeps, and the interface any store implements (SQLite here; PostgreSQL can follow).

The protocol is async and speaks in whole operations (claim, label, release) so a store can make
each one atomic: SQLite runs them one at a time on its thread; a PostgreSQL store would use
`UPDATE ... WHERE lease is free` in one statement, which is the whole lease guarantee.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from proxy.exchange import FindingRecord
from proxy.review.estimates import Reviewed

LABELS = ("ok", "violation", "unsure")


@dataclass(frozen=True)
class Label:
    reviewer: str
    label: str
    categories: tuple[str, ...] = ()
    comment: str = ""
    ts: float = 0.0


@dataclass
class Item:
    id: str
    created: float
    request_id: str
    tenant: str
    model: str
    route: str
    backend: str
    model_version: str
    stratum: str
    probability: float
    verdict: str
    prompt: str  # as the backend received it: after request-side redaction
    output: str  # as the client received it: after response-side redaction
    findings: tuple[FindingRecord, ...] = ()
    template_id: str = ""
    template_version: str = ""
    required: int = 1  # reviews needed: 2 for the double-reviewed share
    has_raw: bool = False
    lease_owner: str | None = None
    lease_until: float = 0.0
    labels: list[Label] = field(default_factory=list)

    @property
    def detectors(self) -> list[str]:
        return sorted({f.detector for f in self.findings})

    @property
    def fired(self) -> frozenset[str]:
        return frozenset(f.detector for f in self.findings if f.action != "allow")

    def findings_json(self) -> str:
        return json.dumps([asdict(f) for f in self.findings])


def findings_from_json(text: str) -> tuple[FindingRecord, ...]:
    return tuple(FindingRecord(**f) for f in json.loads(text or "[]"))


@dataclass(frozen=True)
class Filters:
    stratum: str = ""
    model: str = ""
    detector: str = ""


@dataclass
class EstimateInputs:
    traffic: dict[str, int]  # exchanges seen per model
    items: list[Reviewed]
    pairs: list[tuple[str, str]]  # first two labels of double-reviewed items


class ReviewStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def add(self, item: Item, raw_output: str | None) -> None: ...

    async def add_counts(self, counts: Counter[tuple[str, str]]) -> None:
        """Exchanges seen per (model, stratum), added to the totals."""

    async def get(self, item_id: str) -> Item | None: ...

    async def queue(self, reviewer: str, filters: Filters, now: float, limit: int = 50) -> list[Item]:
        """Items this reviewer may claim: still short of reviews, not labelled by them, lease free or theirs."""

    async def claim(self, item_id: str, reviewer: str, now: float, lease_s: float) -> bool:
        """Take or renew the lease; False when someone else holds it or the item needs no more reviews."""

    async def claim_next(self, reviewer: str, filters: Filters, now: float, lease_s: float) -> Item | None: ...

    async def release(self, item_id: str, reviewer: str) -> None: ...

    async def label(self, item_id: str, reviewer: str, label: Label) -> bool:
        """Record a label; only the lease holder may. Ends the lease."""

    async def pending(self) -> int:
        """Items still short of the reviews they need (the queue's depth, for metrics)."""

    async def raw_output(self, item_id: str) -> str | None: ...

    async def estimate_inputs(self) -> EstimateInputs: ...

    async def facets(self) -> dict[str, list[str]]:
        """Values for the queue's filters: strata, models, detectors."""

    async def export(self) -> list[dict[str, Any]]:
        """Every item with its labels, redacted text only (never raw)."""

    async def end_session(self, nonce: str, expires: float) -> None:
        """Logout: the session with this nonce is refused from now on (kept until it would expire anyway)."""

    async def session_ended(self, nonce: str) -> bool: ...

    async def credential(self, reviewer: str, replaces: str) -> str | None:
        """The stronger hash saved for this reviewer while its configured hash is still `replaces`."""

    async def save_credential(self, reviewer: str, replaces: str, password_hash: str) -> None: ...
