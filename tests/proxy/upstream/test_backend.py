"""Passive ejection with exponential back-off, and recovery only through a passing probe."""

from __future__ import annotations

from proxy.upstream.backend import Backend
from proxy.upstream.settings import HealthSettings


def backend(**health: float) -> Backend:
    return Backend(url="http://b", group="g", health=HealthSettings(eject_base_s=1, eject_max_s=8, **health))


def test_ejection_backs_off_exponentially_up_to_the_cap() -> None:
    b = backend()
    backoffs = []
    now = 0.0
    for _ in range(6):
        assert b.eject(now, "refused")
        backoffs.append(b.ejected_until - now)
        now = b.ejected_until
        b.probe_pending = False  # window over, no success in between: the next failure backs off further
    assert backoffs == [1, 2, 4, 8, 8, 8]


def test_concurrent_failures_count_as_one_ejection() -> None:
    b = backend()
    assert b.eject(0.0, "a")
    assert not b.eject(0.1, "b")
    assert b.ejections_total == 1 and not b.available


def test_probe_before_backoff_ends_does_not_readmit() -> None:
    b = backend()
    b.eject(0.0, "refused")
    assert not b.record_probe(True, 0.5)
    assert not b.available
    assert b.record_probe(True, 1.0)
    assert b.available


def test_failed_probe_after_backoff_ejects_again_for_longer() -> None:
    b = backend()
    b.eject(0.0, "refused")
    b.record_probe(False, 1.0)
    assert not b.available
    assert b.ejected_until == 3.0  # 1s, then 2s more
    assert b.ejections_total == 2


def test_success_after_recovery_resets_the_backoff() -> None:
    b = backend()
    b.eject(0.0, "refused")
    b.record_probe(True, 1.0)
    b.record_success()
    b.eject(5.0, "refused")
    assert b.ejected_until == 6.0


def test_active_thresholds() -> None:
    b = backend(unhealthy_threshold=2, healthy_threshold=2)
    b.record_probe(False, 0)
    assert b.available
    b.record_probe(False, 1)
    assert not b.available
    b.record_probe(True, 2)
    assert not b.available
    assert b.record_probe(True, 3)
    assert b.available
