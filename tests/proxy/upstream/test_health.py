"""Active probes against a real socket: a dead server goes unhealthy, an ejected one comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp

from proxy.upstream import Group, HealthProber, UpstreamPool
from proxy.upstream.settings import GroupSettings
from tests.proxy.conftest import UpstreamFactory
from tests.support.llama import free_port


def pool_for(urls: list[str], interval_s: float = 0.1, path: str = "/v1/models") -> UpstreamPool:
    health = {"interval_s": interval_s, "timeout_s": 0.5, "unhealthy_threshold": 2, "eject_base_s": 0.2, "path": path}
    return UpstreamPool([Group(GroupSettings(name="g", backends=[{"url": u} for u in urls], health=health))])


async def until(condition: Callable[[], bool], limit_s: float = 3.0) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < limit_s, "condition not reached in time"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_dead_backend_becomes_unhealthy_and_recovers(make_upstream: UpstreamFactory) -> None:
    up = await make_upstream()
    pool = pool_for([up.url], path="/health")
    backend = pool.groups[0].backends[0]
    async with aiohttp.ClientSession() as session:
        prober = HealthProber(pool, session)
        await prober.start()
        try:
            assert backend.available
            up.script.status = 503  # the fake's /health now answers 503
            await until(lambda: not backend.healthy)
            up.script.status = 200
            await until(lambda: backend.available)
        finally:
            await prober.stop()


async def test_ejected_backend_is_probed_when_its_backoff_ends(make_upstream: UpstreamFactory) -> None:
    up = await make_upstream()
    pool = pool_for([up.url], interval_s=30)  # only the ejection deadline can wake the prober soon
    backend = pool.groups[0].backends[0]
    async with aiohttp.ClientSession() as session:
        prober = HealthProber(pool, session)
        await prober.start()
        try:
            backend.eject(time.monotonic(), "test")
            took = await until(lambda: backend.available)
            assert 0.15 < took < 1.5
        finally:
            await prober.stop()


async def test_unreachable_backend_is_reported_unhealthy() -> None:
    pool = pool_for([f"http://127.0.0.1:{free_port()}"])
    backend = pool.groups[0].backends[0]
    async with aiohttp.ClientSession() as session:
        prober = HealthProber(pool, session)
        await prober.start()
        try:
            await until(lambda: not backend.healthy)
        finally:
            await prober.stop()
    assert prober._task is None
