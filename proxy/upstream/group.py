"""A group of interchangeable backends serving a set of model names, with a bounded wait queue.

A request takes a slot on one backend (`acquire`) and gives it back (`release`). When every
available backend is at its cap, requests wait in FIFO order up to the queue deadline; a full
queue answers 429 at once, an expired wait or a group with no available backend answers 503,
both with `Retry-After`.
"""

from __future__ import annotations

import asyncio
import fnmatch
import math
import os
import random
import re
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence

from proxy.errors import Overloaded, Unavailable
from proxy.upstream.backend import Backend
from proxy.upstream.balancer import make_balancer
from proxy.upstream.settings import GroupSettings


class Group:
    def __init__(
        self,
        settings: GroupSettings,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        # A canary is reached only through its primary's traffic split, never by model name.
        self.canary_of = settings.canary.of if settings.canary is not None else None
        self.patterns = [] if self.canary_of else settings.models
        self.literal_models = [p for p in settings.models if not any(c in p for c in "*?[")]
        # Matched on every request: names by set lookup, globs compiled once (fnmatchcase re-parses each call).
        self._match_all = "*" in self.patterns
        self._literals = frozenset(p for p in self.patterns if p in self.literal_models)
        self._globs = [re.compile(fnmatch.translate(p)).match for p in self.patterns if p not in self._literals]
        self.backends = [
            Backend(
                url=b.url,
                group=settings.name,
                health=settings.health,
                weight=b.weight,
                max_concurrency=b.max_concurrency or settings.max_concurrency,
            )
            for b in settings.backends
        ]
        self.rng = rng or random.Random()
        self.balancer = make_balancer(settings.balancer, self.backends, settings.affinity.virtual_nodes, self.rng)
        self.canaries: list[Group] = []
        # Percent of the primary's traffic this canary takes now: 0 until its smoke test passes, or after
        # a rollback (proxy/codeploy/rollout.py); the configured weight at once when there is no smoke test.
        canary = settings.canary
        self.traffic_weight = canary.weight if canary is not None and canary.opens_at_once() else 0.0
        key = os.environ.get(settings.api_key_env, "") if settings.api_key_env else ""
        # Sent upstream instead of whatever the client sent; never logged, never in a response.
        self.authorization: str | None = f"Bearer {key}" if key else None
        self.clock = clock
        self._waiters: deque[asyncio.Future[None]] = deque()

    def add_backend(self, backend: Backend) -> None:
        """For servers Warden starts itself (co-deploy); the balancer is rebuilt so a hash ring includes it."""
        self.backends.append(backend)
        self.balancer = make_balancer(self.settings.balancer, self.backends, self.settings.affinity.virtual_nodes,
                                      self.rng)

    def pick_version(self) -> Group:
        """The canary split: each canary takes its share while it has a backend to serve it; the rest stay here."""
        if not self.canaries:
            return self
        roll = self.rng.random() * 100.0
        for canary in self.canaries:
            if roll < canary.traffic_weight:
                return canary if canary.healthy_count else self
            roll -= canary.traffic_weight
        return self

    def matches(self, model: str) -> bool:
        return self._match_all or model in self._literals or any(glob(model) for glob in self._globs)

    @property
    def queue_depth(self) -> int:
        return len(self._waiters)

    @property
    def healthy_count(self) -> int:
        return sum(1 for b in self.backends if b.available)

    def try_pick(self, key: str | None, exclude: Collection[Backend] = ()) -> Backend | None:
        candidates = [b for b in self.backends if b.available and b not in exclude]
        if not candidates:
            raise Unavailable(
                f"no healthy backend in upstream group {self.name!r}",
                headers={"Retry-After": str(self._retry_after())},
            )
        return self.balancer.pick(candidates, key)

    async def acquire(self, key: str | None, exclude: Collection[Backend] = ()) -> Backend:
        """Take a slot, waiting in line if needed; the caller must `release` the returned backend."""
        backend = None if self._waiters else self.try_pick(key, exclude)
        if backend is None:
            backend = await self._wait_for_slot(key, exclude)
        backend.outstanding += 1
        return backend

    def release(self, backend: Backend) -> None:
        backend.outstanding -= 1
        self.wake_one()

    def wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def wake_all(self) -> None:
        """Capacity came back (a backend recovered): let every waiter try again."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def _wait_for_slot(self, key: str | None, exclude: Collection[Backend]) -> Backend:
        queue = self.settings.queue
        if len(self._waiters) >= queue.max_waiting:
            raise Overloaded(
                f"upstream group {self.name!r} is at capacity and its queue is full",
                headers={"Retry-After": "1"},
            )
        deadline = self.clock() + queue.timeout_s
        loop = asyncio.get_running_loop()
        first = True
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            # A waiter woken but beaten to the slot keeps its place at the head of the line.
            if first:
                self._waiters.append(waiter)
            else:
                self._waiters.appendleft(waiter)
            first = False
            try:
                async with asyncio.timeout(max(0.0, deadline - self.clock())):
                    await waiter
            except TimeoutError:
                if waiter.done() and not waiter.cancelled():
                    self.wake_one()
                raise Unavailable(
                    f"timed out after {queue.timeout_s:g}s waiting for a free backend in group {self.name!r}",
                    headers={"Retry-After": str(self._retry_after())},
                ) from None
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self.wake_one()  # pass the wake-up on rather than lose it
                raise
            finally:
                if not waiter.done():
                    waiter.cancel()
                if waiter.cancelled() and waiter in self._waiters:
                    self._waiters.remove(waiter)
            backend = self.try_pick(key, exclude)
            if backend is not None:
                return backend

    def _retry_after(self) -> int:
        now = self.clock()
        pending = [b.ejected_until - now for b in self.backends if b.probe_pending]
        wait = min(pending) if pending else self.settings.health.interval_s
        return max(1, math.ceil(wait))


class UpstreamPool:
    """Every configured group; the first group whose model patterns match the request wins."""

    def __init__(self, groups: list[Group]) -> None:
        self.groups = groups
        by_name = {g.name: g for g in groups}
        for group in groups:
            if group.canary_of is not None:
                by_name[group.canary_of].canaries.append(group)
        wildcard = [g for g in groups if "*" in g.patterns]
        self.default_group = wildcard[0] if wildcard else next((g for g in groups if not g.canary_of), groups[0])

    @classmethod
    def from_settings(cls, settings: Sequence[GroupSettings], rng: random.Random | None = None) -> UpstreamPool:
        return cls([Group(s, rng=rng) for s in settings])

    def group_for(self, model: str) -> Group | None:
        for group in self.groups:
            if group.matches(model):
                return group
        return None

    def backends(self) -> list[Backend]:
        return [b for g in self.groups for b in g.backends]
