"""Budgets: money a tenant, a key or an end user may spend in a period, and the ledger that holds it.

Charged at admission from an estimate and settled to the backend's usage, as the token limits
are, so concurrent requests cannot all slip under a hard budget at once: a request is admitted
only if what is settled, plus what the requests in flight reserved, plus its own estimate, fits.
The in-memory ledger runs on the event loop, so a check-and-reserve is one atomic step (exact in
one process); `charge_now`/`settle_now` are synchronous for the same reason as the limiter's
`admit_now`, so the host's one owner (the supervisor, proxy/governance/shared.py) can hold it for
every worker. Several hosts share budgets through Redis (redis_budgets.py).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

from pydantic import Field, model_validator

from proxy.section import Section

Period = Literal["daily", "weekly", "monthly", "rolling"]
ROLLING_SLOTS = 60  # a rolling window keeps its spend in this many slots: it forgets in steps of window/60


class BudgetSettings(Section):
    """An amount per period, in the pricing currency. `hard` refuses once spent; `soft` only tells and alerts."""

    amount: float = Field(gt=0)
    period: Period = Field("monthly", description="daily, weekly (from Monday) and monthly start at midnight in "
                                                  "governance.budget_timezone; rolling: the last window_s seconds")
    window_s: float | None = Field(None, gt=0, description="rolling only: the window's length")
    mode: Literal["soft", "hard"] = "hard"
    alert_at: list[float] = Field(default_factory=lambda: [0.8, 1.0],
                                  description="shares of the amount whose crossing is an audit row and a metric")

    @model_validator(mode="after")
    def _window(self) -> BudgetSettings:
        if (self.period == "rolling") != (self.window_s is not None):
            raise ValueError("window_s is required for period: rolling, and only for it")
        if any(not 0 < a <= 10 for a in self.alert_at):
            raise ValueError("alert_at: shares of the amount, each above 0 (1.0 is the whole budget)")
        return self


def period_bounds(budget: BudgetSettings, now: float, zone: ZoneInfo) -> tuple[float, float]:
    """The calendar period holding `now` (epoch seconds) in `zone`: (start, end)."""
    local = datetime.fromtimestamp(now, zone)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if budget.period == "daily":
        start, end = day, day + timedelta(days=1)
    elif budget.period == "weekly":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    # wall-clock arithmetic, then re-read in the zone: a period that spans a DST change keeps its midnights
    return (start.replace(tzinfo=None).replace(tzinfo=zone).timestamp(),
            end.replace(tzinfo=None).replace(tzinfo=zone).timestamp())


@dataclass
class Account:
    """One budget's spend in its current period; `reserved` is what the requests in flight were charged."""

    budget: BudgetSettings
    start: float = 0.0
    end: float = 0.0  # calendar periods: when it resets; rolling: unused
    spent: float = 0.0
    reserved: float = 0.0
    slots: deque[tuple[float, float]] = field(default_factory=deque)  # rolling: (slot start, spent in it)

    def roll(self, now: float, zone: ZoneInfo) -> None:
        b = self.budget
        if b.period == "rolling":
            assert b.window_s is not None
            while self.slots and self.slots[0][0] + b.window_s / ROLLING_SLOTS <= now - b.window_s:
                self.spent -= self.slots.popleft()[1]
            if not self.slots:
                self.spent = 0.0  # no float dust left behind
            return
        if now >= self.end or now < self.start:
            self.start, self.end = period_bounds(b, now, zone)
            self.spent = 0.0

    def add(self, amount: float, now: float) -> None:
        self.spent += amount
        window = self.budget.window_s
        if window is not None:
            slot = math.floor(now / (window / ROLLING_SLOTS)) * (window / ROLLING_SLOTS)
            if self.slots and self.slots[-1][0] == slot:
                self.slots[-1] = (slot, self.slots[-1][1] + amount)
            else:
                self.slots.append((slot, amount))

    def resets_at(self, now: float) -> float:
        """When spend falls back under the amount (rolling: as the oldest slots leave the window)."""
        window = self.budget.window_s
        if window is None:
            return self.end
        left, step = self.spent + self.reserved, window / ROLLING_SLOTS
        for start, amount in self.slots:
            left -= amount
            if left < self.budget.amount:
                return start + step + window
        return now + step

    @property
    def committed(self) -> float:
        return self.spent + self.reserved


@dataclass(frozen=True)
class BudgetRef:
    """A budget as one request meets it: whose (scope and name), and its terms."""

    scope: Literal["tenant", "key", "user"]
    name: str  # tenant; key id; tenant/user
    tenant: str
    budget: BudgetSettings

    @property
    def account(self) -> str:
        return f"{self.scope}:{self.name}"


@dataclass(frozen=True)
class Crossing:
    ref: BudgetRef
    threshold: float
    spent: float


@dataclass(frozen=True)
class BudgetRefusal:
    ref: BudgetRef
    spent: float
    resets_at: float


@dataclass
class Charge:
    """What one admitted request reserved; `remaining` is the least left of any budget it met."""

    refs: tuple[BudgetRef, ...]
    estimate: float
    remaining: float | None
    crossings: list[Crossing] = field(default_factory=list)


class Ledger(Protocol):
    async def charge(self, refs: tuple[BudgetRef, ...], estimate: float, now: float) -> Charge | BudgetRefusal: ...
    async def settle(self, charge: Charge, cost: float, now: float) -> list[Crossing]: ...
    def used_ratios(self, now: float) -> dict[str, float]: ...
    async def close(self) -> None: ...


class MemoryLedger:
    """Every account of this process (or of the host, held by its one owner). Accounts idle past their
    period are dropped when there are many (end users come and go)."""

    MAX_ACCOUNTS = 100_000

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self.accounts: dict[str, Account] = {}

    def account(self, ref: BudgetRef, now: float) -> Account:
        account = self.accounts.get(ref.account)
        if account is None or account.budget != ref.budget:
            if len(self.accounts) >= self.MAX_ACCOUNTS:
                self._prune(now)
            kept = account
            account = self.accounts[ref.account] = Account(ref.budget)
            if kept is not None:  # new terms (a reload): what was spent this period still counts
                account.spent, account.reserved, account.slots = kept.spent, kept.reserved, kept.slots
                account.start, account.end = kept.start, kept.end
                if kept.budget.period != ref.budget.period:
                    account.start = account.end = 0.0
        account.roll(now, self.zone)
        return account

    def _prune(self, now: float) -> None:
        for name, account in list(self.accounts.items()):
            account.roll(now, self.zone)
            if account.committed == 0:
                del self.accounts[name]

    async def charge(self, refs: tuple[BudgetRef, ...], estimate: float, now: float) -> Charge | BudgetRefusal:
        return self.charge_now(refs, estimate, now)

    def charge_now(self, refs: tuple[BudgetRef, ...], estimate: float, now: float) -> Charge | BudgetRefusal:
        """Check every hard budget first, then reserve from all: a refused request costs nothing."""
        accounts = [self.account(ref, now) for ref in refs]
        for ref, account in zip(refs, accounts, strict=True):
            b = ref.budget
            if b.mode == "hard" and (account.committed >= b.amount or account.committed + estimate > b.amount):
                return BudgetRefusal(ref, account.spent, account.resets_at(now))
        remaining = None
        for account in accounts:
            account.reserved += estimate
            left = max(0.0, account.budget.amount - account.committed)
            remaining = left if remaining is None else min(remaining, left)
        return Charge(refs, estimate, remaining)

    async def settle(self, charge: Charge, cost: float, now: float) -> list[Crossing]:
        return self.settle_now(charge, cost, now)

    def settle_now(self, charge: Charge, cost: float, now: float) -> list[Crossing]:
        """The reservation becomes what the request cost; thresholds crossed on the way are returned once."""
        crossings = []
        for ref in charge.refs:
            account = self.account(ref, now)
            account.reserved = max(0.0, account.reserved - charge.estimate)
            before = account.spent
            account.add(cost, now)
            for share in ref.budget.alert_at:
                line = share * ref.budget.amount
                if before < line <= account.spent:
                    crossings.append(Crossing(ref, share, account.spent))
        return crossings

    def used_ratios(self, now: float) -> dict[str, float]:
        """Spent over amount per tenant budget (the alert rules' gauge); read at scrape time."""
        out = {}
        for name, account in self.accounts.items():
            if name.startswith("tenant:"):
                account.roll(now, self.zone)
                out[name.removeprefix("tenant:")] = account.spent / account.budget.amount
        return out

    async def close(self) -> None:
        pass
