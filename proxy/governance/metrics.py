"""Governance metrics. Labels are tenants (from the config, so bounded) and fixed reasons: never a key."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class _Restrictions(Collector):
    def __init__(self, read: Callable[[], dict[tuple[str, str], int]]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("warden_abuse_restrictions", "Keys or clients throttled or suspended now.",
                                  labels=["tenant", "kind"])
        for (tenant, kind), count in sorted(self.read().items()):
            gauge.add_metric([tenant, kind], count)
        yield gauge


class GovernanceMetrics:
    def __init__(self, registry: CollectorRegistry, restrictions: Callable[[], dict[tuple[str, str], int]]) -> None:
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
