"""Budgets exact across the workers of one host: the supervisor's one ledger (proxy/governance/shared.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from proxy.governance.budgets import BudgetRef, BudgetRefusal, BudgetSettings, Charge, Crossing
from proxy.governance.shared import HubLink, HubServer, SharedLedger
from tests.proxy.governance.conftest import make_key
from tests.proxy.supervisor.warden import CHAT, eventually, metric, supervised

UTC = ZoneInfo("UTC")


async def test_one_ledger_for_every_link_and_a_dead_workers_reservations_come_back(tmp_path: Path) -> None:
    hub = HubServer(tmp_path / "hub.sock", lambda: {"ready": True}, lambda: "", lambda index: None)
    await hub.start()
    links = [HubLink(tmp_path / "hub.sock") for _ in range(2)]
    for link in links:
        await link.open()
    crossed: list[list[Crossing]] = [[], []]
    now = time.time()  # what the supervisor frees a dead worker's reservations at
    try:
        ledgers = [SharedLedger(link, UTC, crossed[i].extend) for i, link in enumerate(links)]
        refs = (BudgetRef("tenant", "t", "t", BudgetSettings(amount=4, period="daily", alert_at=[0.5])),)
        first = await asyncio.gather(*(ledgers[i % 2].charge(refs, 1.0, now) for i in range(8)))
        granted = [c for c in first if isinstance(c, Charge)]
        assert len(granted) == 4 and all(isinstance(c, BudgetRefusal) for c in first if c not in granted)
        held_by_0 = [c for i, c in enumerate(first) if isinstance(c, Charge) and i % 2 == 0]
        held_by_1 = [c for i, c in enumerate(first) if isinstance(c, Charge) and i % 2 == 1]
        assert held_by_0 and held_by_1
        for charge in held_by_1:  # settled to what they cost: the crossing is told to the worker that settled
            assert ledgers[1].settle_now(charge, 1.0, now) == []
        await links[0].close()  # worker 0 dies holding reservations: they are free at once
        await asyncio.sleep(0.1)
        assert [c.threshold for c in crossed[1]] == [0.5] and crossed[0] == []
        assert ledgers[1].used_ratios(now) == {"t": len(held_by_1) / 4}
        again = [await ledgers[1].charge(refs, 1.0, now) for _ in held_by_0]
        assert all(isinstance(c, Charge) for c in again)
        assert isinstance(await ledgers[1].charge(refs, 1.0, now), BudgetRefusal)
    finally:
        for link in links:
            await link.close()
        await hub.stop()


async def test_a_hard_budget_admits_exactly_its_amount_of_fifty_concurrent_requests_across_two_workers(
        tmp_path: Path) -> None:
    acme = make_key("acme")
    config: dict[str, Any] = {
        "telemetry": {"enabled": False},
        # each request is estimated at 1 (one prompt token, no output price) and, with no usage in the stream, costs 1
        "pricing": {"currency": "EUR", "models": [{"model": "*", "input_per_million": 1_000_000}]},
        "governance": {"keys": [acme.config()], "tenants": {"acme": {"budget": {"amount": 10, "period": "daily"}}}},
    }
    slow = {**CHAT, "stream": True, "n": 4, "gap_ms": 250}  # ~1 s each: all fifty overlap
    with supervised(tmp_path, config) as (warden, _):
        async def one() -> tuple[int, str]:
            # a connection each, so the kernel spreads them over both workers
            async with aiohttp.ClientSession() as http, \
                    http.post(warden.url + "/v1/chat/completions", json=slow, headers=acme.headers) as resp:
                body = await resp.text()
                return resp.status, body

        answers = await asyncio.gather(*(one() for _ in range(50)))
        statuses = [status for status, _ in answers]
        assert statuses.count(200) == 10 and statuses.count(429) == 40  # not one over, not one under
        assert all("budget_exceeded" in body for status, body in answers if status == 429)
        assert (await one())[0] == 429  # settled: the budget is spent on every worker
        eventually(lambda: metric(warden.url, "warden_budget_used_ratio") >= 1.0)
