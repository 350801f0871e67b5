"""Fixed-capacity buffers for a stream: the window ring and the reservoir sample.

Both allocate once, at the stream's first item, for their whole capacity: a stream's memory is
known up front (capacity × dim float32) and never grows with traffic.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from drift.compare import Sample

Array = np.ndarray[Any, Any]


class Ring:
    """The last `capacity` rows with their timestamps and scalar signals (NaN where a row had none)."""

    def __init__(self, capacity: int, dim: int, scalar_names: tuple[str, ...] = ()) -> None:
        self.capacity = capacity
        self.dim = dim
        self._rows = np.empty((capacity, dim), dtype=np.float32)
        self._ts = np.empty(capacity, dtype=np.float64)
        self._scalars = {name: np.full(capacity, np.nan) for name in scalar_names}
        self._head = 0  # next slot to write
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def append(self, rows: Array, now: float, scalars: dict[str, Array] | None = None) -> None:
        """Adds rows (n × dim); beyond capacity the oldest go. Unknown scalar names are ignored."""
        rows = rows[-self.capacity:]
        scalars = {k: np.asarray(v)[-len(rows):] for k, v in (scalars or {}).items()}
        slots = (self._head + np.arange(len(rows))) % self.capacity
        self._rows[slots] = rows
        self._ts[slots] = now
        for name, column in self._scalars.items():
            column[slots] = scalars.get(name, np.nan)
        self._head = int((self._head + len(rows)) % self.capacity)
        self.count = min(self.capacity, self.count + len(rows))

    def _order(self) -> Array:
        start = (self._head - self.count) % self.capacity
        return (start + np.arange(self.count)) % self.capacity

    def oldest(self) -> float | None:
        return float(self._ts[self._order()[0]]) if self.count else None

    def evict_before(self, cutoff: float) -> int:
        """Drops rows stamped before `cutoff` (rows arrive in time order, so they are the oldest)."""
        order = self._order()
        old = int(np.searchsorted(self._ts[order], cutoff, side="left"))
        self.count -= old
        return old

    def snapshot(self) -> Sample:
        """A copy in arrival order, safe to hand to another thread while this ring takes more rows."""
        order = self._order()
        return Sample(self._rows[order].copy(), {k: v[order].copy() for k, v in self._scalars.items()})

    def clear(self) -> None:
        self._head = 0
        self.count = 0


class Reservoir:
    """A uniform sample of `size` rows from everything offered since the last `take` (Vitter's algorithm R)."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size = size
        self.rng = rng
        self._rows: list[Array] = []
        self.seen = 0

    def offer(self, rows: Array) -> None:
        for row in rows:
            self.seen += 1
            if len(self._rows) < self.size:
                self._rows.append(row.copy())
                continue
            slot = int(self.rng.integers(0, self.seen))
            if slot < self.size:
                self._rows[slot] = row.copy()

    def take(self) -> Array:
        rows = np.stack(self._rows) if self._rows else np.empty((0, 0), dtype=np.float32)
        self._rows, self.seen = [], 0
        return rows
