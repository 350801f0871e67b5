"""Spend at the door: which budgets a request meets, its charge before it runs, its cost after.

The gate (gate.py) calls this twice per request: `charge` at admission (an estimate reserved in
the ledger, refused when a hard budget cannot hold it) and `settle` when the answer has ended
(the request's cost from its usage, written on its record, counted on /metrics, and the ledger
moved from the estimate to the cost). Budget changes, crossings and refusals are audit rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from proxy.errors import RateLimited
from proxy.exchange import Exchange
from proxy.governance.budgets import BudgetRef, BudgetRefusal, BudgetSettings, Charge, Crossing, Ledger
from proxy.governance.metrics import GovernanceMetrics
from proxy.governance.pricing import Priced, Pricing
from proxy.governance.settings import GovernanceSettings
from proxy.governance.watch import Audit

log = logging.getLogger("warden.governance.spend")
MAX_USER = 128  # end-user names are the client's: cut, as every client-chosen label is
REFUSAL_ROW_EVERY_S = 60.0  # a flood of refusals is one audit row a minute per budget, with its count
BUDGET_HEADER = "x-warden-budget-remaining"
RESET_HEADER = "x-warden-budget-reset"


@dataclass(slots=True)
class Reservation:
    """One request's claim on money: its price entry, its busy-clock mark, and the ledger's charge."""

    priced: Priced | None
    mark: tuple[float, float] | None
    charge: Charge | None


def budget_terms(settings: GovernanceSettings, key_budgets: Mapping[str, BudgetSettings]) -> dict[str, str]:
    """Every configured budget as account -> its terms in JSON: what a reload compares for audit rows."""
    terms = {f"key:{k}": b.model_dump_json() for k, b in key_budgets.items()}
    for name, tenant in settings.tenants.items():
        if tenant.budget is not None:
            terms[f"tenant:{name}"] = tenant.budget.model_dump_json()
        if tenant.user_budget is not None:
            terms[f"user_budget:{name}"] = tenant.user_budget.model_dump_json()
    if settings.default_tenant.budget is not None:
        terms["tenant:*"] = settings.default_tenant.budget.model_dump_json()
    return terms


class SpendKeeper:
    def __init__(self, pricing: Pricing, ledger: Ledger, metrics: GovernanceMetrics, audit: Audit,
                 wall: Callable[[], float], zone: ZoneInfo) -> None:
        self.pricing = pricing
        self.ledger = ledger
        self.metrics = metrics
        self.audit = audit
        self.wall = wall
        self.zone = zone
        self._refusal_rows: dict[str, tuple[float, int]] = {}  # account -> (last row's time, refusals since)

    @staticmethod
    def user_of(header_value: str, payload: Mapping[str, Any] | None) -> str:
        """The end user: the configured header, else the OpenAI body's `user` (Messages: metadata.user_id)."""
        user: Any = header_value
        if not user and payload is not None:
            user = payload.get("user")
            if not user and isinstance(payload.get("metadata"), dict):
                user = payload["metadata"].get("user_id")
        return user[:MAX_USER] if isinstance(user, str) else ""

    @staticmethod
    def refs(tenant: str, tenant_budget: BudgetSettings | None, user_budget: BudgetSettings | None,
             key_id: str, key_budget: BudgetSettings | None, user: str) -> tuple[BudgetRef, ...]:
        refs = []
        if tenant_budget is not None:
            refs.append(BudgetRef("tenant", tenant, tenant, tenant_budget))
        if key_budget is not None:
            refs.append(BudgetRef("key", key_id, tenant, key_budget))
        if user_budget is not None and user:
            refs.append(BudgetRef("user", f"{tenant}/{user}", tenant, user_budget))
        return tuple(refs)

    def estimate(self, priced: Priced | None, prompt_tokens: int, payload: Mapping[str, Any] | None) -> float:
        """Prompt tokens at the input price plus the most output it asked for (max_tokens) at the output price."""
        if priced is None:
            return 0.0
        asked = 0
        if payload is not None:
            for name in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
                value = payload.get(name)
                if isinstance(value, int) and value > 0:
                    asked = value
                    break
        return priced.token_cost(prompt_tokens, asked)

    async def charge(self, model: str | None, refs: tuple[BudgetRef, ...], prompt_tokens: int,
                     payload: Mapping[str, Any] | None, now: float) -> Reservation:
        """Reserve the estimate in every budget the request meets; RateLimited (budget_exceeded) if a hard one
        cannot hold it."""
        priced = self.pricing.lookup(model)
        charge = None
        if refs:
            granted = await self.ledger.charge(refs, self.estimate(priced, prompt_tokens, payload), self.wall())
            if isinstance(granted, BudgetRefusal):
                self._refused(granted)
                raise self._exceeded(granted)
            charge = granted
        mark = priced.share.enter(now) if priced is not None and priced.per_second else None
        return Reservation(priced, mark, charge)

    def _exceeded(self, refusal: BudgetRefusal) -> RateLimited:
        ref, b = refusal.ref, refusal.ref.budget
        resets = datetime.fromtimestamp(refusal.resets_at, self.zone).isoformat(timespec="seconds")
        whose = {"tenant": "this tenant", "key": "this key", "user": "this end user"}[ref.scope]
        period = f"{b.period} ({b.window_s:g} s)" if b.period == "rolling" else b.period
        retry = max(1, round(refusal.resets_at - self.wall()))
        return RateLimited(f"the {period} budget of {b.amount:g} {self.pricing.currency} for {whose} is spent "
                           f"({refusal.spent:.4f}); it resets at {resets}", code="budget_exceeded",
                           headers={"Retry-After": str(retry), RESET_HEADER: resets, BUDGET_HEADER: "0"})

    def _refused(self, refusal: BudgetRefusal) -> None:
        ref = refusal.ref
        self.metrics.refusals.labels(ref.tenant, "budget_exceeded").inc()
        now = self.wall()
        last, count = self._refusal_rows.get(ref.account, (0.0, 0))
        count += 1
        if now - last < REFUSAL_ROW_EVERY_S:
            self._refusal_rows[ref.account] = (last, count)
            return
        if len(self._refusal_rows) > 10_000:
            self._refusal_rows.clear()
        self._refusal_rows[ref.account] = (now, 0)
        self.audit("warden", "budget_refused", ref.account, ref.tenant, "refused",
                   {"amount": f"{ref.budget.amount:g}", "spent": f"{refusal.spent:.6f}", "period": ref.budget.period,
                    "refusals": str(count), "resets_at": f"{refusal.resets_at:.0f}"})

    def cost(self, exchange: Exchange, reservation: Reservation, estimated_prompt: int, estimated_output: int,
             now: float) -> float:
        """The request's cost from its usage (or, with none reported, the estimates), onto its record."""
        priced = reservation.priced
        if priced is None:
            if exchange.model:
                self.metrics.unpriced.labels(exchange.tenant, self.metrics.model_label(exchange.model)).inc()
            return 0.0
        if exchange.prompt_tokens or exchange.completion_tokens:
            cost = priced.token_cost(exchange.prompt_tokens, exchange.completion_tokens, exchange.cached_tokens)
        else:
            cost = priced.token_cost(estimated_prompt, estimated_output)
        if reservation.mark is not None:
            cost += priced.time_cost(exchange.upstream_time, priced.share.leave(reservation.mark, now))
        exchange.cost, exchange.currency = cost, self.pricing.currency
        if cost:
            self.metrics.spend.labels(exchange.tenant, self.metrics.model_label(exchange.model),
                                      self.pricing.currency).inc(cost)
        return cost

    def crossed(self, crossings: list[Crossing]) -> None:
        for c in crossings:
            ref = c.ref
            self.metrics.budget_crossings.labels(ref.tenant, ref.scope, f"{c.threshold:g}").inc()
            log.warning("budget %s crossed %g%% (%.4f of %g %s)", ref.account, c.threshold * 100, c.spent,
                        ref.budget.amount, self.pricing.currency)
            self.audit("warden", "budget_crossed", ref.account, ref.tenant, "ok",
                       {"threshold": f"{c.threshold:g}", "spent": f"{c.spent:.6f}", "amount": f"{ref.budget.amount:g}",
                        "mode": ref.budget.mode, "period": ref.budget.period})

    def changed(self, old: dict[str, str], new: dict[str, str]) -> None:
        """A reload or a keys-file change that set, changed or removed a budget: one audit row each."""
        for account in sorted(old.keys() | new.keys()):
            if old.get(account) != new.get(account):
                tenant = account.split(":", 1)[1].split("/")[0] if not account.startswith("key:") else ""
                self.audit("admin", "budget_changed", account, tenant, "ok",
                           {"old": old.get(account, ""), "new": new.get(account, "")})
