"""Governance metrics. Labels are tenants (from the config, so bounded) and fixed reasons: never a key."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from proxy.lightmetrics import LightCounter
from proxy.metrics import ModelLabels


class _Restrictions(Collector):
    def __init__(self, read: Callable[[], dict[tuple[str, str], int]]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("warden_abuse_restrictions", "Keys or clients throttled or suspended now.",
                                  labels=["tenant", "kind"])
        for (tenant, kind), count in sorted(self.read().items()):
            gauge.add_metric([tenant, kind], count)
        yield gauge


class _BudgetUse(Collector):
    """Spent over amount per tenant budget, read at scrape time (the 80% and 100% alert rules read it)."""

    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("warden_budget_used_ratio", "Share of each tenant's budget spent in its period.",
                                  labels=["tenant"])
        for tenant, ratio in sorted(self.read().items()):
            gauge.add_metric([tenant], ratio)
        yield gauge


class GovernanceMetrics:
    def __init__(self, registry: CollectorRegistry, restrictions: Callable[[], dict[tuple[str, str], int]],
                 budget_use: Callable[[], dict[str, float]] = dict) -> None:
        self.auth_failures = Counter("warden_auth_failures", "Requests refused for their credentials, by reason.",
                                     ["reason"], registry=registry)
        self.refusals = Counter("warden_governance_refusals", "Requests refused by a tenant's limits, by reason.",
                                ["tenant", "reason"], registry=registry)
        self.abuse_actions = Counter("warden_abuse_actions", "Throttles and suspensions begun, ended and lifted.",
                                     ["tenant", "action"], registry=registry)
        self.tokens = Counter("warden_tenant_tokens", "Tokens counted against tenants' limits (usage or estimate).",
                              ["tenant"], registry=registry)
        limiter_errors = Counter("warden_limiter_errors", "Calls to the shared (Redis) limiter that failed, by step.",
                                 ["op"], registry=registry)
        self.limiter_errors = {op: limiter_errors.labels(op) for op in ("admit", "settle")}
        registry.register(_Restrictions(restrictions))
        # Spend is counted on every priced request, so in the light families (no lock per update).
        self.model_label = ModelLabels()
        self.spend = LightCounter("warden_spend", "Money spent, by tenant, model and currency (pricing:).",
                                  ["tenant", "model", "currency"], registry=registry)
        self.unpriced = LightCounter("warden_spend_unpriced", "Requests whose model has no price: counted at 0.",
                                     ["tenant", "model"], registry=registry)
        self.budget_crossings = Counter("warden_budget_crossings", "Budgets that crossed an alert threshold, by "
                                        "scope (tenant, key, user).", ["tenant", "scope", "threshold"],
                                        registry=registry)
        registry.register(_BudgetUse(budget_use))
