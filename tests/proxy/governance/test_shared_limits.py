"""Limits exact across the workers of one host: the supervisor's one limiter (proxy/governance/shared.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from proxy.governance.limits import Grant, Limits, Refusal
from proxy.governance.shared import HubLink, HubServer, SharedLimiter
from tests.proxy.governance.conftest import make_key
from tests.proxy.supervisor.warden import CHAT, supervised


async def test_one_limiter_for_every_link_and_a_dead_workers_slots_come_back(tmp_path: Path) -> None:
    ready: list[int] = []
    hub = HubServer(tmp_path / "hub.sock", lambda: {"ready": True}, lambda: "", ready.append)
    await hub.start()
    links = [HubLink(tmp_path / "hub.sock") for _ in range(2)]
    for link in links:
        await link.open()
    try:
        limiters = [SharedLimiter(link) for link in links]
        capped = Limits(None, None, 3, 0.0)
        first = await asyncio.gather(*(limiters[i % 2].admit("t", capped, 1, f"s{i}", 0.0) for i in range(8)))
        assert [isinstance(g, Grant) for g in first].count(True) == 3
        assert {g.code for g in first if isinstance(g, Refusal)} == {"concurrency_limit_exceeded"}
        held_by_0 = [g for i, g in enumerate(first) if isinstance(g, Grant) and i % 2 == 0]
        await links[0].close()  # worker 0 dies holding its slots: they are free at once
        await asyncio.sleep(0.1)
        again = [await limiters[1].admit("t", capped, 1, f"t{i}", 0.0) for i in range(len(held_by_0))]
        assert all(isinstance(g, Grant) for g in again)
        assert isinstance(await limiters[1].admit("t", capped, 1, "u", 0.0), Refusal)
    finally:
        for link in links:
            await link.close()
        await hub.stop()


async def test_fifty_concurrent_requests_across_two_workers_admit_exactly_the_limit(tmp_path: Path) -> None:
    capped, metered = make_key("capped"), make_key("metered")
    governance: dict[str, Any] = {"keys": [capped.config(), metered.config()],
                                  "tenants": {"capped": {"max_concurrency": 10},
                                              "metered": {"requests_per_minute": 10}}}
    slow = {**CHAT, "stream": True, "n": 4, "gap_ms": 250}  # ~1 s each: all fifty overlap
    with supervised(tmp_path, {"telemetry": {"enabled": False}, "governance": governance}) as (warden, _):
        async def one(key: Any, body: dict[str, Any]) -> int:
            # a connection each, so the kernel spreads them over both workers
            async with aiohttp.ClientSession() as http, \
                    http.post(warden.url + "/v1/chat/completions", json=body, headers=key.headers) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(one(capped, slow) for _ in range(50)))
        assert statuses.count(200) == 10 and statuses.count(429) == 40
        assert await one(capped, slow) == 200  # every slot came back when its stream ended
        statuses = await asyncio.gather(*(one(metered, CHAT) for _ in range(50)))
        assert statuses.count(200) == 10 and statuses.count(429) == 40
