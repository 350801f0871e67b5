"""Choosing a backend among those that can take a request.

Balancers see only candidates that are available (healthy, not ejected, not excluded by a
retry) and must themselves skip saturated ones; `None` means every candidate is at its cap and
the request has to wait in the group's queue.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Sequence
from typing import Protocol

from proxy.upstream.backend import Backend


class Balancer(Protocol):
    def pick(self, candidates: Sequence[Backend], key: str | None) -> Backend | None: ...


def _free(candidates: Sequence[Backend]) -> list[Backend]:
    return [b for b in candidates if b.outstanding < b.max_concurrency]


class LeastOutstanding:
    """Power of two choices on outstanding/weight: near-optimal spread without a global scan's herding."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    @staticmethod
    def score(backend: Backend) -> float:
        return backend.load

    def pick(self, candidates: Sequence[Backend], key: str | None = None) -> Backend | None:
        free = _free(candidates)
        if len(free) <= 1:
            return free[0] if free else None
        a, b = self._rng.sample(free, 2)
        return b if self.score(b) < self.score(a) else a


def reported_load(backend: Backend) -> float:
    """Our own count or the server's, whichever is higher (others may share it), plus its queue and KV cost."""
    return (max(backend.outstanding, backend.reported_running) + backend.reported_pressure) / backend.weight


class LeastLoaded(LeastOutstanding):
    """Power of two choices on the load the servers report (llm-d's queue and KV-cache scorers, simplified).

    Two random candidates rather than the global minimum: the signals lag by a scrape interval,
    and every request piling onto the one backend that looked idle is the herd this avoids.
    """

    score = staticmethod(reported_load)


class RoundRobin:
    """Smooth weighted round robin (nginx's): weights honoured without bursts to the heaviest."""

    def __init__(self) -> None:
        self._current: dict[Backend, int] = {}

    def pick(self, candidates: Sequence[Backend], key: str | None = None) -> Backend | None:
        free = _free(candidates)
        if not free:
            return None
        total = 0
        best: Backend | None = None
        for backend in free:
            weight = self._current.get(backend, 0) + backend.weight
            self._current[backend] = weight
            total += backend.weight
            if best is None or weight > self._current[best]:
                best = backend
        assert best is not None
        self._current[best] -= total
        return best


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


class PrefixAffinity:
    """Consistent hashing on the prompt prefix or session, so a backend's KV cache gets reused.

    The ring holds every backend of the group, healthy or not, so a backend's keys do not move
    when another one blinks; an unavailable owner hands the key to the next one on the ring.
    A saturated owner sends the request to the least-loaded backend instead of queueing it.
    """

    def __init__(self, backends: Sequence[Backend], virtual_nodes: int, rng: random.Random | None = None) -> None:
        points: list[tuple[int, int]] = []
        for index, backend in enumerate(backends):
            for replica in range(virtual_nodes * backend.weight):
                points.append((_hash(f"{backend.url}#{replica}"), index))
        points.sort()
        self._hashes = [h for h, _ in points]
        self._owners = [backends[i] for _, i in points]
        self._fallback = LeastOutstanding(rng)

    def owner(self, key: str, candidates: Sequence[Backend]) -> Backend | None:
        allowed = set(candidates)
        start = bisect.bisect(self._hashes, _hash(key))
        for step in range(len(self._owners)):
            backend = self._owners[(start + step) % len(self._owners)]
            if backend in allowed:
                return backend
        return None

    def pick(self, candidates: Sequence[Backend], key: str | None) -> Backend | None:
        if key:
            chosen = self.owner(key, candidates)
            if chosen is not None and not chosen.saturated:
                return chosen
        free = _free(candidates)
        return min(free, key=lambda b: b.load) if free else None


def make_balancer(
    kind: str, backends: Sequence[Backend], virtual_nodes: int, rng: random.Random | None = None
) -> Balancer:
    if kind == "least_outstanding":
        return LeastOutstanding(rng)
    if kind == "least_loaded":
        return LeastLoaded(rng)
    if kind == "round_robin":
        return RoundRobin()
    if kind == "prefix_affinity":
        return PrefixAffinity(backends, virtual_nodes, rng)
    raise ValueError(f"unknown balancer {kind!r}")
