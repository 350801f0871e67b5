"""Co-deploy metrics, read at scrape time: replica states, reported load, queue pressure, canaries."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from proxy.codeploy.manager import CoDeploy
from proxy.codeploy.rollout import RolloutController
from proxy.codeploy.signals import LoadScraper
from proxy.upstream import UpstreamPool
from proxy.upstream.balancer import reported_load

STATES = ("starting", "ready", "restarting", "stopped")
CANARY_STATES = ("pending", "smoke", "live", "smoke_failed", "rolled_back")


class CoDeployCollector(Collector):
    def __init__(self, pool: UpstreamPool, scraper: LoadScraper, rollouts: RolloutController,
                 managed: CoDeploy | None) -> None:
        self.pool, self.scraper, self.rollouts, self.managed = pool, scraper, rollouts, managed

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        pressure = GaugeMetricFamily(
            "warden_upstream_queue_pressure", "Requests waiting (in the servers and in Warden's queue) per "
            "available replica: the autoscaling signal.", labels=["group"])
        load = GaugeMetricFamily(
            "warden_upstream_reported_load", "The balancer's load score for a backend: in flight (Warden's count "
            "or the server's, whichever is higher) plus weighted queue and KV-cache use, per unit of weight.",
            labels=["group", "backend"])
        for group in self.pool.groups:
            pressure.add_metric([group.name], self.scraper.queue_pressure(group))
            for backend in group.backends:
                load.add_metric([group.name, backend.url], reported_load(backend))
        yield from (pressure, load)
        if self.managed is not None and self.managed.replicas:
            state = GaugeMetricFamily("warden_managed_replica_state", "1 for the state a managed replica is in.",
                                      labels=["group", "replica", "state"])
            restarts = CounterMetricFamily("warden_managed_replica_restarts", "Restarts after the process exited.",
                                           labels=["group", "replica"])
            for replica in self.managed.replicas:
                labels = [replica.group.name, str(replica.index)]
                for name in STATES:
                    state.add_metric([*labels, name], 1.0 if replica.state == name else 0.0)
                restarts.add_metric(labels, replica.restarts)
            yield from (state, restarts)
        if self.rollouts.rollouts:
            weight = GaugeMetricFamily("warden_canary_weight", "Percent of its primary's traffic a canary gets now.",
                                       labels=["group", "primary"])
            phase = GaugeMetricFamily("warden_canary_state", "1 for the state a canary is in.",
                                      labels=["group", "state"])
            for name, rollout in self.rollouts.rollouts.items():
                weight.add_metric([name, rollout.primary.name], rollout.canary.traffic_weight)
                for value in CANARY_STATES:
                    phase.add_metric([name, value], 1.0 if rollout.state == value else 0.0)
            rollbacks = CounterMetricFamily("warden_canary_rollbacks", "Automatic canary rollbacks.")
            rollbacks.add_metric([], self.rollouts.rollbacks)
            yield from (weight, phase, rollbacks)
