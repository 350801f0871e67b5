"""Prices: what one request costs, from its model's price per token or its group's busy time.

Hosted APIs bill by the token; a self-hosted model server costs its GPUs by the hour whoever uses
them, which is why gateways that only know token prices show "$0 spend" for vLLM. Warden charges
a self-hosted request its share of the time its group was busy (docs/governance.md):

    cost  = upstream_seconds × share × replica_price_per_second
    share = the mean, over the request's life, of min(k, R) / k
            (k requests in flight on the priced model, R replicas: up to R each has a replica to
            itself, beyond R they share the busy replicas)
    replica_price_per_second = gpu_second × gpus_per_replica, or replica_hour / 3600

so the requests' costs add up to the busy replica-time at its price; idle time is nobody's.
Token prices and a time price may both apply to one model (a hosted API with a fixed fee).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import Field, model_validator

from proxy.codeploy.settings import UpstreamGroupSettings
from proxy.section import Section

MILLION = 1_000_000


class ModelPrice(Section):
    """The price of the models whose names match `model` (a glob); the first matching entry wins."""

    model: str = Field(description="glob over the model name the client asked for: 'gpt-4o*', 'llama-*'")
    input_per_million: float = Field(0.0, ge=0, description="per million prompt tokens")
    output_per_million: float = Field(0.0, ge=0, description="per million completion tokens")
    cached_input_per_million: float | None = Field(
        None, ge=0, description="per million prompt tokens the backend read from its cache (default: the input price)")
    gpu_second: float | None = Field(None, ge=0, description="self-hosted: price of one GPU for one second")
    replica_hour: float | None = Field(None, ge=0, description="self-hosted: price of one replica for one hour")
    group: str | None = Field(None, description="the upstream group serving it: its replicas and GPUs count")
    replicas: int | None = Field(None, ge=1, description="default: the group's (managed replicas or backends), else 1")
    gpus_per_replica: int | None = Field(None, ge=1,
                                         description="default: the managed group's GPUs per replica, else 1")

    @model_validator(mode="after")
    def _one_time_price(self) -> ModelPrice:
        if self.gpu_second is not None and self.replica_hour is not None:
            raise ValueError("give gpu_second or replica_hour, not both")
        return self


class PricingSettings(Section):
    """The `pricing:` section. A request whose model matches no entry costs 0, counted as unpriced."""

    currency: str = Field("USD", min_length=1, max_length=8, description="the unit of every price and budget")
    models: list[ModelPrice] = Field(default_factory=list)

    def check_groups(self, groups: Sequence[UpstreamGroupSettings]) -> None:
        names = {g.name for g in groups}
        for i, price in enumerate(self.models):
            if price.group is not None and price.group not in names:
                raise ValueError(f"pricing.models.{i}.group: no upstream group named {price.group!r}")


@dataclass(frozen=True, slots=True)
class Capacity:
    replicas: int
    gpus_per_replica: int


def capacities(groups: Sequence[UpstreamGroupSettings]) -> dict[str, Capacity]:
    """Replicas and GPUs per replica of each upstream group, as co-deploy starts them (or its backends)."""
    out: dict[str, Capacity] = {}
    for group in groups:
        managed = group.managed
        if managed is not None:
            gpus = max(1, len(managed.gpus) // managed.replicas) if managed.gpus else 1
            out[group.name] = Capacity(managed.replicas, gpus)
        else:
            out[group.name] = Capacity(max(1, len(group.backends)), 1)
    return out


class BusyShare:
    """The virtual clock of one self-hosted price: dS = min(k, R) / k dt while k > 0 requests are in flight.

    A request's mean share is (S_end - S_start) / its life; kept per process (each worker's view of
    its own requests), on the event loop, so no lock.
    """

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas
        self.in_flight = 0
        self.total = 0.0
        self.stamp = 0.0

    def _advance(self, now: float) -> None:
        if self.in_flight:
            self.total += (now - self.stamp) * min(self.in_flight, self.replicas) / self.in_flight
        self.stamp = now

    def enter(self, now: float) -> tuple[float, float]:
        self._advance(now)
        self.in_flight += 1
        return self.total, now

    def leave(self, mark: tuple[float, float], now: float) -> float:
        self._advance(now)
        self.in_flight -= 1
        life = now - mark[1]
        return (self.total - mark[0]) / life if life > 0 else 1.0


@dataclass(slots=True)
class Priced:
    """One price entry as it runs: its settings, the replica rate per second, its busy clock."""

    price: ModelPrice
    per_second: float  # 0 when the price is per token only
    share: BusyShare

    def token_cost(self, prompt: int, completion: int, cached: int = 0) -> float:
        p = self.price
        cached = min(cached, prompt)
        cached_price = p.input_per_million if p.cached_input_per_million is None else p.cached_input_per_million
        return ((prompt - cached) * p.input_per_million + cached * cached_price
                + completion * p.output_per_million) / MILLION

    def time_cost(self, upstream_s: float, share: float) -> float:
        return upstream_s * share * self.per_second


class Pricing:
    """The price list as it runs: a lookup per model name, cached (a miss is cached too)."""

    def __init__(self, settings: PricingSettings, capacity: Mapping[str, Capacity] | None = None) -> None:
        self.settings = settings
        self.currency = settings.currency
        self.entries = [self._entry(p, (capacity or {}).get(p.group or "")) for p in settings.models]
        self._cache: dict[str, Priced | None] = {}

    @staticmethod
    def _entry(price: ModelPrice, capacity: Capacity | None) -> Priced:
        replicas = price.replicas or (capacity.replicas if capacity else 1)
        gpus = price.gpus_per_replica or (capacity.gpus_per_replica if capacity else 1)
        if price.gpu_second is not None:
            per_second = price.gpu_second * gpus
        elif price.replica_hour is not None:
            per_second = price.replica_hour / 3600.0
        else:
            per_second = 0.0
        return Priced(price, per_second, BusyShare(replicas))

    def __bool__(self) -> bool:
        return bool(self.entries)

    def lookup(self, model: str | None) -> Priced | None:
        if not model:
            return None
        if model in self._cache:
            return self._cache[model]
        found = next((e for e in self.entries if fnmatch.fnmatchcase(model, e.price.model)), None)
        if len(self._cache) < 10_000:  # clients choose model names: the cache must not grow without end
            self._cache[model] = found
        return found
