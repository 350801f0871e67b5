"""One upstream model server and the health state the balancer and the prober share.

State changes happen on the event loop only (no locks): the relay counts outstanding requests
and reports failures, the health prober reports probe results.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from proxy.upstream.settings import HealthSettings

log = logging.getLogger("warden.upstream")


@dataclass(eq=False)
class Backend:
    """Identity-hashed so balancers can key their per-backend state on the object itself."""

    url: str
    group: str
    health: HealthSettings
    weight: int = 1
    max_concurrency: int = 64
    outstanding: int = 0
    healthy: bool = True
    ejected_until: float = 0.0
    probe_pending: bool = False
    ejections_in_a_row: int = 0
    ejections_total: int = 0
    failures_in_a_row: int = 0
    # What the server reports about itself (its /metrics, read off the hot path by proxy/codeploy/signals.py):
    # requests it runs, and the weighted cost of its queue and KV cache; 0 when unknown or stale.
    reported_running: float = 0.0
    reported_pressure: float = 0.0
    _probe_ok_streak: int = field(default=0, repr=False)
    _probe_fail_streak: int = field(default=0, repr=False)
    # Told of every state change (backend, previous state, reason): the audit trail's health rows.
    listener: Callable[[Backend, str, str], None] | None = field(default=None, repr=False)

    @property
    def state(self) -> str:
        return "ejected" if self.probe_pending else "healthy" if self.healthy else "unhealthy"

    def _changed(self, previous: str, reason: str) -> None:
        if self.listener is not None and self.state != previous:
            self.listener(self, previous, reason)

    @property
    def available(self) -> bool:
        """Takes new requests: actively healthy and not waiting out (or re-proving after) an ejection."""
        return self.healthy and not self.probe_pending

    @property
    def saturated(self) -> bool:
        return self.outstanding >= self.max_concurrency

    @property
    def load(self) -> float:
        return self.outstanding / self.weight

    def eject(self, now: float, reason: str) -> bool:
        """Take the backend out with exponential back-off; it comes back only after a passing probe.

        Returns False when it was already out, so concurrent failures count as one ejection.
        """
        if self.probe_pending:
            return False
        previous = self.state
        backoff = min(self.health.eject_base_s * 2**self.ejections_in_a_row, self.health.eject_max_s)
        self.ejections_in_a_row += 1
        self.ejections_total += 1
        self.ejected_until = now + backoff
        self.probe_pending = True
        log.warning("ejected %s (group %s) for %.1fs: %s", self.url, self.group, backoff, reason)
        self._changed(previous, reason)
        return True

    def mark(self, up: bool, reason: str) -> None:
        """Set by an owner that knows better than a probe: a managed server became ready, or its process died."""
        previous = self.state
        self.healthy = up
        self._probe_ok_streak = self._probe_fail_streak = 0
        if up:
            self.probe_pending = False
            self.failures_in_a_row = self.ejections_in_a_row = 0
        self._changed(previous, reason)

    def record_success(self) -> None:
        self.failures_in_a_row = 0
        if not self.probe_pending:
            self.ejections_in_a_row = 0

    def record_failure(self) -> int:
        self.failures_in_a_row += 1
        return self.failures_in_a_row

    def probe_due(self, now: float) -> bool:
        """An ejected backend is probed as soon as its back-off ends, not at the next interval."""
        return not self.probe_pending or now >= self.ejected_until

    def record_probe(self, ok: bool, now: float) -> bool:
        """Apply one active probe result; returns True when the backend became available again."""
        was_available = self.available
        previous = self.state
        if ok:
            self._probe_ok_streak += 1
            self._probe_fail_streak = 0
            if not self.healthy and self._probe_ok_streak >= self.health.healthy_threshold:
                self.healthy = True
                log.warning("%s (group %s) is healthy again", self.url, self.group)
            if self.probe_pending and now >= self.ejected_until:
                self.probe_pending = False
                self.failures_in_a_row = 0
                log.warning("%s (group %s) passed its probe after ejection", self.url, self.group)
        else:
            self._probe_fail_streak += 1
            self._probe_ok_streak = 0
            if self.healthy and self._probe_fail_streak >= self.health.unhealthy_threshold:
                self.healthy = False
                log.warning("%s (group %s) failed %d probes: unhealthy", self.url, self.group, self._probe_fail_streak)
            if self.probe_pending and now >= self.ejected_until:
                self.probe_pending = False
                self.eject(now, "probe after ejection failed")
        self._changed(previous, "active probe passed" if ok else "active probe failed")
        return self.available and not was_available
