"""The servers' own load, read from their Prometheus `/metrics` off the hot path.

What a server knows and Warden cannot: requests it queued behind a full batch, how full its KV
cache is, and requests other clients sent it. Each scrape sets two numbers on the backend
(`reported_running`, `reported_pressure`) that the `least_loaded` balancer weighs with Warden's
own outstanding count; the same numbers give each group's queue pressure per replica, the
metric an autoscaler (KEDA, HPA) scales replicas on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from proxy.codeploy.settings import deployed
from proxy.upstream import Backend, Group, UpstreamPool

log = logging.getLogger("warden.codeploy.signals")

# Names by server; several of one kind are summed (vLLM labels each by model_name).
RUNNING = ("vllm:num_requests_running", "llamacpp:requests_processing", "sglang:num_running_reqs",
           "tgi_batch_current_size")
WAITING = ("vllm:num_requests_waiting", "llamacpp:requests_deferred", "sglang:num_queue_reqs", "tgi_queue_size")
KV_USAGE = ("vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc", "llamacpp:kv_cache_usage_ratio",
            "sglang:token_usage")  # all fractions 0..1 despite vLLM's name
_WANTED = RUNNING + WAITING + KV_USAGE


@dataclass(frozen=True)
class Signals:
    running: float
    waiting: float
    kv_usage: float | None


def parse_signals(text: str) -> Signals | None:
    """None when the text has none of the known names (a server without them, or not Prometheus at all).

    Lines are filtered before parsing: a vLLM scrape is mostly histograms, and parsing only the
    handful of gauges keeps a scrape well under a millisecond on the loop.
    """
    lines = [line for line in text.splitlines() if line.startswith(_WANTED)]
    if not lines:
        return None
    totals: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families("\n".join(lines) + "\n"):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    except ValueError as exc:
        log.debug("unparsable metrics: %s", exc)
        return None
    kv = [totals[n] for n in KV_USAGE if n in totals]
    return Signals(running=sum(totals.get(n, 0.0) for n in RUNNING),
                   waiting=sum(totals.get(n, 0.0) for n in WAITING),
                   kv_usage=max(kv) if kv else None)


def scrapes(group: Group) -> bool:
    return deployed(group.settings).load.scrape or group.settings.balancer == "least_loaded"


class LoadScraper:
    def __init__(self, pool: UpstreamPool, session: aiohttp.ClientSession,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.session = session
        self.clock = clock
        self.signals: dict[Backend, Signals] = {}
        self._seen: dict[Backend, float] = {}

    @property
    def groups(self) -> list[Group]:
        return [g for g in self.pool.groups if scrapes(g)]

    async def scrape(self, group: Group, backend: Backend) -> None:
        load = deployed(group.settings).load
        signals = None
        if backend.available:
            try:
                timeout = aiohttp.ClientTimeout(total=max(0.5, load.interval_s))
                async with self.session.get(backend.url + load.path, timeout=timeout) as resp:
                    if resp.status == 200:
                        signals = parse_signals(await resp.text(errors="replace"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.debug("metrics of %s not read: %r", backend.url, exc)
        now = self.clock()
        if signals is not None:
            self.signals[backend], self._seen[backend] = signals, now
        elif now - self._seen.get(backend, -1e18) > 3 * load.interval_s:
            self.signals.pop(backend, None)  # stale: fall back to Warden's own count
        current = self.signals.get(backend)
        backend.reported_running = current.running if current else 0.0
        backend.reported_pressure = (load.waiting_weight * current.waiting
                                     + load.kv_weight * (current.kv_usage or 0.0)) if current else 0.0

    async def scrape_all(self) -> None:
        jobs = [self.scrape(g, b) for g in self.groups for b in g.backends]
        if jobs:
            await asyncio.gather(*jobs)

    def queue_pressure(self, group: Group) -> float:
        """Requests waiting (in the servers and in Warden's own queue) per available replica."""
        available = [b for b in group.backends if b.available]
        waiting = sum(s.waiting for b, s in self.signals.items() if b.group == group.name and b in available)
        return (waiting + group.queue_depth) / max(1, len(available))

    async def run(self) -> None:
        interval = min((deployed(g.settings).load.interval_s for g in self.groups), default=2.0)
        while True:
            await self.scrape_all()
            await asyncio.sleep(interval)
