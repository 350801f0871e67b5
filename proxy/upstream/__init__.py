"""Upstream model servers: groups, balancing, slots and queues, health."""

from proxy.upstream.backend import Backend
from proxy.upstream.group import Group, UpstreamPool
from proxy.upstream.health import HealthProber

__all__ = ["Backend", "Group", "HealthProber", "UpstreamPool"]
