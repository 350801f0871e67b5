"""Per-tenant admission: token buckets per minute for requests and tokens, and a concurrency cap.

The in-memory limiter runs on the event loop, so a check-and-take is atomic within one process:
under any concurrency one process never admits more than its limits (the bound is exact).
The workers of one host share one such limiter in the supervisor (proxy/governance/shared.py);
several hosts share limits through the Redis limiter (proxy/governance/redis_limiter.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class TokenBucket:
    """`per_minute` units refill evenly; a full bucket holds one minute's worth (the burst)."""

    per_minute: float
    level: float = 0.0
    stamp: float | None = None  # None until first use: a new bucket starts full

    def _refill(self, now: float) -> None:
        if self.stamp is None:
            self.level, self.stamp = self.per_minute, now
            return
        self.level = min(self.per_minute, self.level + (now - self.stamp) * self.per_minute / 60.0)
        self.stamp = now

    def available(self, now: float) -> float:
        self._refill(now)
        return self.level

    def wait_s(self, amount: float, now: float) -> float:
        """Seconds until `amount` fits (0 if it fits now); an amount over the burst waits for a full bucket."""
        self._refill(now)
        missing = min(amount, self.per_minute) - self.level
        return 0.0 if missing <= 0 else missing * 60.0 / self.per_minute

    def take(self, amount: float, now: float) -> None:
        self._refill(now)
        self.level -= amount  # may go below zero: usage reported after the fact is still owed

    def reset_s(self, now: float) -> float:
        """Seconds until the bucket is full again (OpenAI's `x-ratelimit-reset-*`)."""
        self._refill(now)
        return max(0.0, (self.per_minute - self.level) * 60.0 / self.per_minute)


def duration(seconds: float) -> str:
    """OpenAI's reset format: `1s`, `6m0s`, `1h2m3s`."""
    whole = max(0, math.ceil(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


@dataclass
class Refusal:
    code: str
    message: str
    retry_after_s: float
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Grant:
    """An admitted request's claim: settled once when its answer ends."""

    tenant: str
    slot: str  # this request's concurrency slot (the request id)
    headers: dict[str, str]
    counts_tokens: bool


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int | None
    tokens_per_minute: int | None
    max_concurrency: int | None
    slot_ttl_s: float  # a slot held longer than this is taken back (a replica that died holding it)


@dataclass
class TenantUsage:
    requests: TokenBucket | None = None
    tokens: TokenBucket | None = None
    in_flight: int = 0

    def headers(self, now: float) -> dict[str, str]:
        out: dict[str, str] = {}
        for kind, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            if bucket is not None:
                out.update(rate_headers(kind, bucket.per_minute, bucket.available(now)))
        return out


def rate_headers(kind: str, per_minute: float, level: float) -> dict[str, str]:
    """OpenAI's `x-ratelimit-*` trio for one bucket."""
    return {f"x-ratelimit-limit-{kind}": str(int(per_minute)),
            f"x-ratelimit-remaining-{kind}": str(max(0, int(level))),
            f"x-ratelimit-reset-{kind}": duration(max(0.0, (per_minute - level) * 60.0 / per_minute))}


class Limiter(Protocol):
    async def admit(self, tenant: str, limits: Limits, charge: int, slot: str, now: float) -> Grant | Refusal: ...
    async def settle(self, grant: Grant, tokens_per_minute: int | None, charged: int, used: int,
                     now: float) -> None: ...
    async def close(self) -> None: ...


class MemoryLimiter:
    """Usage per tenant in this process; limits are passed at each call so a reload applies at once."""

    def __init__(self) -> None:
        self._usage: dict[str, TenantUsage] = {}

    def usage(self, tenant: str, rpm: int | None, tpm: int | None) -> TenantUsage:
        usage = self._usage.get(tenant)
        if usage is None:
            usage = self._usage[tenant] = TenantUsage()
        if rpm is None:
            usage.requests = None
        elif usage.requests is None or usage.requests.per_minute != rpm:
            usage.requests = TokenBucket(float(rpm))
        if tpm is None:
            usage.tokens = None
        elif usage.tokens is None or usage.tokens.per_minute != tpm:
            usage.tokens = TokenBucket(float(tpm))
        return usage

    async def admit(self, tenant: str, limits: Limits, charge: int, slot: str, now: float) -> Grant | Refusal:
        return self.admit_now(tenant, limits, charge, slot, now)

    def admit_now(self, tenant: str, limits: Limits, charge: int, slot: str, now: float) -> Grant | Refusal:
        """Check every limit first, then take from all: a refused request costs nothing.

        Synchronous, so one call is one atomic step of its event loop: the supervisor's shared
        limiter (shared.py) calls it for every worker of the host.
        """
        usage = self.usage(tenant, limits.requests_per_minute, limits.tokens_per_minute)
        refusal = self._check(usage, limits.max_concurrency, charge, now)
        if refusal is not None:
            refusal.headers = usage.headers(now)
            return refusal
        if usage.requests is not None:
            usage.requests.take(1, now)
        if usage.tokens is not None:
            usage.tokens.take(charge, now)
        usage.in_flight += 1
        return Grant(tenant, slot, usage.headers(now), usage.tokens is not None)

    @staticmethod
    def _check(usage: TenantUsage, max_concurrency: int | None, charge: int, now: float) -> Refusal | None:
        if max_concurrency is not None and usage.in_flight >= max_concurrency:
            return Refusal("concurrency_limit_exceeded",
                           f"at most {max_concurrency} requests at once for this tenant", 1.0)
        if usage.requests is not None and (wait := usage.requests.wait_s(1, now)) > 0:
            return Refusal("rate_limit_exceeded",
                           f"request rate limit of {int(usage.requests.per_minute)}/min reached", wait)
        if usage.tokens is not None and (wait := usage.tokens.wait_s(charge, now)) > 0:
            return Refusal("tokens_rate_limit_exceeded",
                           f"token rate limit of {int(usage.tokens.per_minute)}/min reached", wait)
        return None

    async def settle(self, grant: Grant, tokens_per_minute: int | None, charged: int, used: int,
                     now: float) -> None:
        self.release(grant, charged, used, now)

    def release(self, grant: Grant, charged: int, used: int, now: float) -> None:
        """The slot is freed and the token bucket pays the difference to what was used, before the next request."""
        usage = self._usage[grant.tenant]
        usage.in_flight -= 1
        if usage.tokens is not None and used != charged:
            usage.tokens.take(used - charged, now)

    async def close(self) -> None:
        pass
