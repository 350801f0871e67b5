"""Abuse signals throttle, escalate to suspension, expire, and can be lifted."""

from __future__ import annotations

from proxy.governance.abuse import AbuseMonitor, Restriction
from proxy.governance.settings import AbuseSettings


def monitor(**overrides: object) -> tuple[AbuseMonitor, list[tuple[str, Restriction]]]:
    events: list[tuple[str, Restriction]] = []
    settings = AbuseSettings.model_validate({"window_s": 60, "throttle_s": 30, "suspend_s": 100, **overrides})
    return AbuseMonitor(settings, lambda action, r: events.append((action, r))), events


def test_jailbreak_attempts_throttle_then_the_throttle_expires() -> None:
    m, events = monitor(max_jailbreaks=3)
    for i in range(2):
        m.observe_prompt("key:a", "acme", f"prompt {i}", float(i))
        m.observe_outcome("key:a", "acme", "block", ["injection"], float(i))
    assert m.restriction("key:a", 2.0) is None
    m.observe_outcome("key:a", "acme", "allow", ["jailbreak_roleplay"], 2.0)
    restriction = m.restriction("key:a", 3.0)
    assert restriction is not None and restriction.kind == "throttle" and "jailbreak" in restriction.reason
    assert m.restriction("key:b", 3.0) is None  # others untouched
    assert m.restriction("key:a", 32.1) is None
    assert [a for a, _ in events] == ["throttle", "expire"]


def test_block_rate_needs_enough_requests() -> None:
    m, _ = monitor(min_requests=10, max_block_rate=0.5)
    for i in range(9):
        m.observe_prompt("key:a", "acme", "x", float(i))
        m.observe_outcome("key:a", "acme", "block", ["pii"], float(i))
    assert m.restriction("key:a", 9.0) is None
    m.observe_prompt("key:a", "acme", "x", 9.0)
    m.observe_outcome("key:a", "acme", "block", ["pii"], 9.0)
    assert m.restriction("key:a", 9.0) is not None


def test_old_events_leave_the_window() -> None:
    m, _ = monitor(max_jailbreaks=3)
    for t in (0.0, 30.0, 61.0):
        m.observe_outcome("key:a", "acme", "block", ["injection"], t)
    assert m.restriction("key:a", 61.0) is None  # three in all, but the first fell out of the window
    m.observe_outcome("key:a", "acme", "block", ["injection"], 62.0)
    assert m.restriction("key:a", 62.0) is not None


def test_systematic_template_querying_is_caught_but_varied_prompts_are_not() -> None:
    m, _ = monitor(max_systematic=20, template_prefix_chars=16)
    template = "Tell me the home address of customer number "
    for i in range(19):
        m.observe_prompt("key:a", "acme", template + str(i), float(i))
        m.observe_prompt("key:b", "acme", f"question {i} about something different entirely", float(i))
    assert m.signals("key:a", 19.0)["systematic"] == 19
    assert m.restriction("key:a", 19.0) is None
    m.observe_prompt("key:a", "acme", template + "19", 19.0)
    found = m.restriction("key:a", 19.0)
    assert found is not None and "systematic" in found.reason
    assert m.restriction("key:b", 19.0) is None


def test_floods_and_repeat_offences_escalate_to_suspension_and_can_be_lifted() -> None:
    m, events = monitor(max_rate_limited=5, suspend_after=2)
    now = 0.0
    for _ in range(5):
        m.observe_refused("ip:1.2.3.4", "anonymous", now)
    first = m.restriction("ip:1.2.3.4", now)
    assert first is not None and first.kind == "throttle" and "flood" in first.reason
    now = 31.0  # expired
    for _ in range(5):
        m.observe_refused("ip:1.2.3.4", "anonymous", now)
    second = m.restriction("ip:1.2.3.4", now)
    assert second is not None and second.kind == "suspend" and second.until == now + 100
    assert m.lift("ip:1.2.3.4") == second
    assert m.restriction("ip:1.2.3.4", now) is None
    assert [a for a, _ in events] == ["throttle", "expire", "suspend", "lift"]


def test_disabled_monitor_observes_nothing() -> None:
    m, events = monitor(enabled=False, max_rate_limited=1)
    m.observe_refused("key:a", "acme", 0.0)
    assert m.restriction("key:a", 0.0) is None and events == []
