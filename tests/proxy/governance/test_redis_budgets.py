"""The Redis budget ledger on its own, against a real redis-server: replicas sharing hard budgets never
spend past them between them, periods start over, rolling windows forget, and an unreachable Redis
admits uncounted and says so."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from proxy.governance.budgets import BudgetRef, BudgetRefusal, BudgetSettings, Charge
from proxy.governance.redis_budgets import RedisLedger
from tests.support.llama import free_port

UTC = ZoneInfo("UTC")
NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC).timestamp()


def ref(amount: float, **terms: Any) -> BudgetRef:
    return BudgetRef("tenant", "acme", "acme", BudgetSettings(amount=amount, **terms))


def replicas(redis_url: str, n: int = 2) -> tuple[list[RedisLedger], list[str]]:
    prefix = f"t-{uuid.uuid4().hex[:8]}:"
    errors: list[str] = []
    return [RedisLedger(redis_url, prefix, UTC, errors.append) for _ in range(n)], errors


async def test_replicas_never_reserve_past_a_hard_budget_between_them(redis_url: str) -> None:
    (a, b), errors = replicas(redis_url)
    budget = (ref(1.0, period="daily"),)
    try:
        results = await asyncio.gather(*((a if i % 2 else b).charge(budget, 0.3, NOW) for i in range(8)))
        admitted = [r for r in results if isinstance(r, Charge)]
        assert len(admitted) == 3 and all(isinstance(r, BudgetRefusal) for r in results if r not in admitted)
        crossings = [c for i, charge in enumerate(admitted)
                     for c in await (a if i % 2 else b).settle(charge, 0.3, NOW + 1)]
        assert [c.threshold for c in crossings] == [0.8]  # 0.6 -> 0.9 crossed 80%, once, on one replica
        refused = await b.charge(budget, 0.2, NOW + 2)  # 0.9 spent: 0.2 more would pass 1.0
        assert isinstance(refused, BudgetRefusal) and abs(refused.spent - 0.9) < 1e-9
        assert refused.resets_at == datetime(2026, 12, 9, tzinfo=UTC).timestamp()
        assert isinstance(await a.charge(budget, 0.05, NOW + 3), Charge)
        assert errors == []
    finally:
        await a.close()
        await b.close()


async def test_a_new_period_starts_over_and_a_soft_budget_never_refuses(redis_url: str) -> None:
    (a,), _ = replicas(redis_url, 1)
    daily, soft = (ref(1.0, period="daily"),), (ref(0.5, period="daily", mode="soft"),)
    try:
        charge = await a.charge(daily, 1.0, NOW)
        assert isinstance(charge, Charge)
        await a.settle(charge, 1.0, NOW)
        assert isinstance(await a.charge(daily, 0.1, NOW + 60), BudgetRefusal)
        assert isinstance(await a.charge(daily, 0.1, NOW + 86_400), Charge)  # the next day
        for _ in range(3):
            over = await a.charge(soft, 0.4, NOW)
            assert isinstance(over, Charge)
            await a.settle(over, 0.4, NOW)
    finally:
        await a.close()


async def test_a_rolling_window_forgets_what_it_spent(redis_url: str) -> None:
    (a,), _ = replicas(redis_url, 1)
    rolling = (ref(1.0, period="rolling", window_s=600.0),)
    try:
        charge = await a.charge(rolling, 1.0, NOW)
        assert isinstance(charge, Charge)
        await a.settle(charge, 1.0, NOW)
        assert isinstance(await a.charge(rolling, 0.1, NOW + 300), BudgetRefusal)
        assert isinstance(await a.charge(rolling, 0.1, NOW + 611), Charge)  # the slot left the window
    finally:
        await a.close()


async def test_an_unreachable_redis_admits_uncounted_and_says_so() -> None:
    errors: list[str] = []
    ledger = RedisLedger(f"redis://127.0.0.1:{free_port()}/0", "x:", UTC, errors.append, timeout_s=0.2)
    try:
        charge = await ledger.charge((ref(1.0, period="daily"),), 5.0, NOW)
        assert isinstance(charge, Charge) and charge.refs == ()
        assert await ledger.settle(charge, 5.0, NOW) == [] and errors == ["admit"]
    finally:
        await ledger.close()
