"""Prices, periods and budgets: the parts alone (with a controllable clock), then through the real proxy."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from proxy.governance.budgets import BudgetRef, BudgetRefusal, BudgetSettings, Charge, MemoryLedger, period_bounds
from proxy.governance.pricing import BusyShare, Capacity, Pricing, PricingSettings
from tests.proxy.conftest import ProxyFactory, UpstreamFactory
from tests.proxy.governance.conftest import governed_config, make_key

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
PARIS = ZoneInfo("Europe/Paris")
# One token costs 1: a prompt of "hi" is estimated at 1 token, and the fake upstream reports 1 + 1.
PER_TOKEN = {"model": "fake-*", "input_per_million": 1_000_000, "output_per_million": 1_000_000}


def at(text: str, zone: ZoneInfo = PARIS) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


def test_price_lookup_takes_the_first_matching_glob_and_misses_cleanly() -> None:
    pricing = Pricing(PricingSettings.model_validate({"currency": "EUR", "models": [
        {"model": "gpt-4o-mini*", "input_per_million": 0.15, "output_per_million": 0.6},
        {"model": "gpt-4o*", "input_per_million": 2.5, "output_per_million": 10, "cached_input_per_million": 1.25},
    ]}))
    mini, big = pricing.lookup("gpt-4o-mini-2024-07-18"), pricing.lookup("gpt-4o")
    assert mini is not None and mini.price.input_per_million == 0.15
    assert big is not None and big.price.input_per_million == 2.5
    assert pricing.lookup("llama-3") is None and pricing.lookup(None) is None and pricing.lookup("GPT-4O") is None
    assert big.token_cost(1_000_000, 100_000) == pytest.approx(2.5 + 1.0)
    assert big.token_cost(1_000_000, 0, cached=400_000) == pytest.approx(0.6 * 2.5 + 0.4 * 1.25)
    assert pricing.currency == "EUR"


def test_a_gpu_second_price_charges_each_request_its_share_of_the_busy_time() -> None:
    pricing = Pricing(PricingSettings.model_validate({"models": [
        {"model": "llama-*", "gpu_second": 0.001, "group": "gpu"}]}), {"gpu": Capacity(replicas=1, gpus_per_replica=2)})
    priced = pricing.lookup("llama-3")
    assert priced is not None and priced.per_second == pytest.approx(0.002)
    share = BusyShare(1)
    a = share.enter(0.0)  # alone for 1 s, then shares the one replica with b for 2 s
    b = share.enter(1.0)
    assert share.leave(a, 3.0) == pytest.approx((1 + 2 * 0.5) / 3)
    assert share.leave(b, 4.0) == pytest.approx((2 * 0.5 + 1) / 3)
    # the two shares add up to the 4 busy seconds: the replica's time is charged once, never twice
    assert pytest.approx(4) == 3 * (1 + 1) / 3 + 3 * (1 + 1) / 3
    hourly = Pricing(PricingSettings.model_validate({"models": [{"model": "*", "replica_hour": 3.6}]})).lookup("a")
    assert hourly is not None and hourly.time_cost(10.0, 0.5) == pytest.approx(0.005)


def test_calendar_periods_start_at_midnight_in_the_configured_zone() -> None:
    day, week, month = (BudgetSettings(amount=1, period=p) for p in ("daily", "weekly", "monthly"))
    now = at("2025-03-30T15:00")  # a Sunday, the day Paris moves to summer time
    assert period_bounds(day, now, PARIS) == (at("2025-03-30T00:00"), at("2025-03-31T00:00"))
    assert period_bounds(week, now, PARIS) == (at("2025-03-24T00:00"), at("2025-03-31T00:00"))
    assert period_bounds(month, now, PARIS) == (at("2025-03-01T00:00"), at("2025-04-01T00:00"))
    assert period_bounds(month, at("2025-12-31T23:59"), PARIS)[1] == at("2026-01-01T00:00")


def test_a_hard_budget_refuses_then_resets_with_its_period() -> None:
    ledger = MemoryLedger(PARIS)
    ref = BudgetRef("tenant", "acme", "acme", BudgetSettings(amount=10, period="daily"))
    now = at("2025-06-01T22:00")
    for _ in range(4):
        charge = ledger.charge_now((ref,), 2.0, now)
        assert isinstance(charge, Charge)
        ledger.settle_now(charge, 2.5, now)  # each cost a little more than its estimate
    refused = ledger.charge_now((ref,), 2.0, now)  # 10 spent + 2 > 10
    assert isinstance(refused, BudgetRefusal) and refused.spent == 10.0
    assert refused.resets_at == at("2025-06-02T00:00")
    assert isinstance(ledger.charge_now((ref,), 2.0, at("2025-06-02T00:00")), Charge)  # a new day


def test_a_rolling_budget_forgets_spend_as_it_leaves_the_window() -> None:
    ledger = MemoryLedger(PARIS)
    ref = BudgetRef("key", "k1", "acme", BudgetSettings(amount=5, period="rolling", window_s=3600))
    charge = ledger.charge_now((ref,), 0.0, 1000.0)
    assert isinstance(charge, Charge)
    ledger.settle_now(charge, 5.0, 1000.0)
    refused = ledger.charge_now((ref,), 0.0, 2000.0)
    assert isinstance(refused, BudgetRefusal) and 4600.0 <= refused.resets_at <= 4700.0
    assert isinstance(ledger.charge_now((ref,), 0.0, refused.resets_at), Charge)


def test_crossings_are_reported_once_each() -> None:
    ledger = MemoryLedger(PARIS)
    ref = BudgetRef("tenant", "acme", "acme", BudgetSettings(amount=10, mode="soft"))
    crossed = []
    for _ in range(12):
        charge = ledger.charge_now((ref,), 1.0, 0.0)
        assert isinstance(charge, Charge)  # soft: never refused
        crossed += [c.threshold for c in ledger.settle_now(charge, 1.0, 0.0)]
    assert crossed == [0.8, 1.0]
    assert ledger.used_ratios(0.0) == {"acme": pytest.approx(1.2)}


def budget_config(up_url: str, keys: list[Any], budget: dict[str, Any], **governance: Any) -> dict[str, Any]:
    config = governed_config([up_url], keys, {"acme": {"budget": budget}}, **governance)
    config["pricing"] = {"currency": "EUR", "models": [PER_TOKEN]}
    return config


async def test_a_hard_budget_holds_exactly_under_50_concurrent_requests(
        make_upstream: UpstreamFactory, make_proxy: ProxyFactory, http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    up.script.hang_s = 0.05
    acme = make_key("acme")
    # each request is estimated at 1 (its prompt) and costs 2 (the usage): 20 spends the budget in 10
    proxy = await make_proxy(budget_config(up.url, [acme], {"amount": 20, "period": "monthly"}))
    audit: list[tuple[str, ...]] = []
    gate = proxy.state.governance
    assert gate is not None
    gate.spend.audit = lambda *row: audit.append(row[:5])

    async def one() -> tuple[int, dict[str, str], Any]:
        async with http.post(proxy.url + "/v1/chat/completions", json=CHAT, headers=acme.headers) as resp:
            return resp.status, dict(resp.headers), await resp.json()

    first = await asyncio.gather(*(one() for _ in range(50)))
    statuses = [s for s, _, _ in first]
    # 20 fit while only estimates were reserved; no more than the budget can hold at admission
    assert statuses.count(200) <= 20 and statuses.count(200) + statuses.count(429) == 50
    admitted = statuses.count(200)
    refused = next(body for s, _, body in first if s == 429)["error"]
    assert refused["code"] == "budget_exceeded"
    assert "resets at 20" in refused["message"]
    headers = next(h for s, h, _ in first if s == 429)
    assert "x-warden-budget-reset" in headers and int(headers["Retry-After"]) >= 1
    spent = gate.ledger.used_ratios(gate.wall())["acme"] * 20
    assert spent == pytest.approx(2.0 * admitted) and spent >= 20  # settled to usage, and the budget is spent
    assert (await one())[0] == 429  # spent: nothing more this month
    assert proxy.metric("warden_governance_refusals_total", {"tenant": "acme", "reason": "budget_exceeded"}) == \
        50 - admitted + 1
    assert proxy.metric("warden_spend_total", {"tenant": "acme", "model": "fake-model", "currency": "EUR"}) == \
        pytest.approx(2.0 * admitted)
    actions = [row[1] for row in audit]
    assert actions.count("budget_refused") == 1  # a flood of refusals is one row a minute, with its count
    assert actions.count("budget_crossed") == 2  # 80% and 100%


async def test_exactly_the_budget_is_admitted_when_estimates_are_the_cost(
        make_upstream: UpstreamFactory, make_proxy: ProxyFactory, http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    up.script.hang_s = 0.05
    acme = make_key("acme")
    config = budget_config(up.url, [acme], {"amount": 10, "period": "daily"})
    config["pricing"]["models"] = [{"model": "fake-*", "input_per_million": 1_000_000}]  # usage: 1 prompt token
    proxy = await make_proxy(config)

    async def one() -> int:
        async with http.post(proxy.url + "/v1/chat/completions", json=CHAT, headers=acme.headers) as resp:
            await resp.read()
            return resp.status

    statuses = await asyncio.gather(*(one() for _ in range(50)))
    assert statuses.count(200) == 10 and statuses.count(429) == 40  # not one over, not one under


async def test_a_soft_budget_answers_with_what_remains_and_never_refuses(
        make_upstream: UpstreamFactory, make_proxy: ProxyFactory, http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    acme = make_key("acme")
    proxy = await make_proxy(budget_config(up.url, [acme], {"amount": 5, "mode": "soft", "period": "weekly"}))
    remaining = []
    for _ in range(4):
        async with http.post(proxy.url + "/v1/chat/completions", json=CHAT, headers=acme.headers) as resp:
            assert resp.status == 200
            remaining.append(float(resp.headers["x-warden-budget-remaining"]))
    assert remaining == [4.0, 2.0, 0.0, 0.0]  # what was left after this request's reservation
    assert proxy.metric("warden_budget_crossings_total", {"tenant": "acme", "scope": "tenant", "threshold": "0.8"}) == 1
    assert proxy.metric("warden_budget_used_ratio", {"tenant": "acme"}) == pytest.approx(8 / 5)


async def test_an_unpriced_model_counts_zero_with_a_warning_metric(
        make_upstream: UpstreamFactory, make_proxy: ProxyFactory, http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    acme = make_key("acme")
    config = budget_config(up.url, [acme], {"amount": 5})
    config["pricing"]["models"] = [{"model": "gpt-*", "input_per_million": 1}]
    proxy = await make_proxy(config)
    for _ in range(3):
        async with http.post(proxy.url + "/v1/chat/completions", json=CHAT, headers=acme.headers) as resp:
            assert resp.status == 200
    assert proxy.metric("warden_spend_unpriced_total", {"tenant": "acme", "model": "fake-model"}) == 3


async def test_an_expired_key_is_refused_and_a_key_has_its_own_limits(
        make_upstream: UpstreamFactory, make_proxy: ProxyFactory, http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    old, limited, fine = make_key("acme"), make_key("acme"), make_key("acme")
    keys = [{**old.config(), "expires_at": "2020-01-01T00:00:00Z"},
            {**limited.config(), "requests_per_minute": 2, "metadata": {"owner": "ci"}},
            {**fine.config(), "expires_at": "2999-01-01T00:00:00Z"}]
    config = governed_config([up.url], [])
    config["governance"]["keys"] = keys
    proxy = await make_proxy(config)

    async def status(key: Any) -> tuple[int, Any]:
        async with http.post(proxy.url + "/v1/chat/completions", json=CHAT, headers=key.headers) as resp:
            return resp.status, await resp.json()

    code, body = await status(old)
    assert code == 401 and body["error"]["code"] == "key_expired" and "2020-01-01" in body["error"]["message"]
    assert [(await status(limited))[0] for _ in range(3)] == [200, 200, 429]
    assert (await status(fine))[0] == 200  # the tenant's limits are not the key's
