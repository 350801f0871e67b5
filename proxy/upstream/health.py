"""Active health probes: one owned task that probes every backend and re-admits ejected ones.

The loop sleeps until the next probe is due: the group's interval, or sooner when an ejected
backend's back-off ends, so recovery takes a probe round-trip rather than a whole interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import aiohttp

from proxy.upstream.backend import Backend
from proxy.upstream.group import Group, UpstreamPool

log = logging.getLogger("warden.health")


class HealthProber:
    def __init__(
        self,
        pool: UpstreamPool,
        session: aiohttp.ClientSession,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.session = session
        self.clock = clock
        self._last_probe: dict[Backend, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def probe(self, group: Group, backend: Backend) -> bool:
        settings = group.settings.health
        try:
            timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
            async with self.session.get(backend.url + settings.path, timeout=timeout) as resp:
                await resp.read()
                return 200 <= resp.status < 300
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.debug("probe of %s failed: %r", backend.url, exc)
            return False

    async def _probe_and_record(self, group: Group, backend: Backend) -> None:
        ok = await self.probe(group, backend)
        now = self.clock()
        self._last_probe[backend] = now
        if backend.record_probe(ok, now):
            group.wake_all()

    def _due(self, now: float) -> list[tuple[Group, Backend]]:
        due = []
        for group in self.pool.groups:
            interval = group.settings.health.interval_s
            for backend in group.backends:
                last = self._last_probe.get(backend)
                ejection_over = backend.probe_pending and now >= backend.ejected_until
                if last is None or now - last >= interval or ejection_over:
                    due.append((group, backend))
        return due

    def _next_wake(self, now: float) -> float:
        delays = []
        for group in self.pool.groups:
            interval = group.settings.health.interval_s
            for backend in group.backends:
                delays.append(self._last_probe.get(backend, now) + interval - now)
                if backend.probe_pending:
                    delays.append(backend.ejected_until - now)
        return max(0.02, min(delays, default=1.0))

    async def check_due(self) -> None:
        due = self._due(self.clock())
        if due:
            await asyncio.gather(*(self._probe_and_record(g, b) for g, b in due))

    async def run(self) -> None:
        while True:
            await self.check_due()
            await asyncio.sleep(self._next_wake(self.clock()))

    async def start(self) -> None:
        """Probe everything once before serving, so /readyz is truthful from the first request."""
        await self.check_due()
        self._task = asyncio.create_task(self.run(), name="warden-health-prober")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
