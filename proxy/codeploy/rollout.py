"""Canary rollouts: a smoke test before any traffic, a live weight, and automatic rollback.

A canary group's share (`Group.traffic_weight`) is 0 until its smoke test passes; then it is the
configured weight, changed live by a config reload (a blue/green switch is weight 100, then 0).
Every answered exchange of the primary and its canary lands in a sliding window; when the
canary's 5xx rate or response-block rate exceeds the primary's by the configured margin, its
weight goes to 0 at once, which is logged, counted, and audited. A reload that changes the
weight again is the operator's word and re-arms a rolled-back canary; a failed smoke test is not
re-armed (that version is broken: restart with a fixed one).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp

from proxy.codeploy.settings import CanarySettings, deployed
from proxy.codeploy.smoke import run_smoke
from proxy.exchange import CLIENT_CLOSED, Exchange
from proxy.policy.service import PolicyService
from proxy.upstream import Group, UpstreamPool

if TYPE_CHECKING:
    from proxy.codeploy.settings import UpstreamGroupSettings

log = logging.getLogger("warden.codeploy.rollout")
Emit = Callable[[str, dict[str, Any]], None]
WINDOW_MAX = 100_000  # outcomes kept per window at most, whatever the traffic


class Window:
    """Outcomes over the last `span_s` seconds: (time, failed, blocked)."""

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self.events: deque[tuple[float, bool, bool]] = deque(maxlen=WINDOW_MAX)
        self.errors = self.blocks = 0

    def add(self, now: float, error: bool, block: bool) -> None:
        if len(self.events) == self.events.maxlen:
            self._drop()
        self.events.append((now, error, block))
        self.errors += error
        self.blocks += block

    def _drop(self) -> None:
        _, error, block = self.events.popleft()
        self.errors -= error
        self.blocks -= block

    def rates(self, now: float) -> tuple[int, float, float]:
        while self.events and self.events[0][0] < now - self.span_s:
            self._drop()
        n = len(self.events)
        return (n, self.errors / n, self.blocks / n) if n else (0, 0.0, 0.0)


class Rollout:
    def __init__(self, canary: Group, primary: Group, settings: CanarySettings) -> None:
        self.canary = canary
        self.primary = primary
        self.settings = settings
        self.target = settings.weight
        self.state = "pending" if settings.smoke is not None else "live"  # smoke, live, smoke_failed, rolled_back
        self.reason = ""
        span = settings.rollback.window_s if settings.rollback is not None else 60.0
        self.canary_window, self.primary_window = Window(span), Window(span)

    def go_live(self) -> None:
        self.state = "live"
        self.canary.traffic_weight = self.target
        self.canary_window, self.primary_window = Window(self.canary_window.span_s), Window(self.canary_window.span_s)


class _Outcome:
    """A tap that only waits for the end of the exchange: its status and verdict say how it went."""

    __slots__ = ("controller", "exchange")

    def __init__(self, controller: RolloutController, exchange: Exchange) -> None:
        self.controller, self.exchange = controller, exchange

    def start(self, status: int, content_type: str) -> None:
        pass

    def upstream(self, chunk: bytes) -> None:
        pass

    def client(self, chunk: bytes) -> None:
        pass

    def end(self, complete: bool) -> None:
        self.controller.record(self.exchange)


class RolloutController:
    def __init__(self, pool: UpstreamPool, emit: Emit | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.emit = emit
        self.clock = clock
        self.rollouts: dict[str, Rollout] = {}
        for group in pool.groups:
            canary = deployed(group.settings).canary
            if canary is not None:
                primary = next(g for g in pool.groups if g.name == group.canary_of)
                self.rollouts[group.name] = Rollout(group, primary, canary)
        self.rollbacks = 0
        self._group_of: dict[str, str] = {}

    @property
    def watching(self) -> bool:
        return any(r.settings.rollback is not None for r in self.rollouts.values())

    def observer(self, exchange: Exchange, payload: dict[str, Any]) -> _Outcome:
        return _Outcome(self, exchange)

    def _group_name(self, url: str) -> str | None:
        if url not in self._group_of:  # managed backends join after start: learn URLs on a miss
            self._group_of = {b.url: g.name for g in self.pool.groups for b in g.backends}
        return self._group_of.get(url)

    def record(self, exchange: Exchange) -> None:
        if exchange.backend is None or exchange.status == CLIENT_CLOSED:
            return  # never forwarded (blocked as a request), or the client left: says nothing of the model
        group = self._group_name(exchange.backend)
        error = exchange.status is None or exchange.status >= 500
        block = exchange.verdict.action == "block"
        now = self.clock()
        for rollout in self.rollouts.values():
            if group == rollout.canary.name:
                rollout.canary_window.add(now, error, block)
                self.evaluate(rollout, now)
            elif group == rollout.primary.name:
                rollout.primary_window.add(now, error, block)

    def evaluate(self, rollout: Rollout, now: float) -> None:
        rule = rollout.settings.rollback
        if rule is None or rollout.state != "live" or rollout.canary.traffic_weight == 0:
            return
        n, errors, blocks = rollout.canary_window.rates(now)
        if n < rule.min_requests:
            return
        _, base_errors, base_blocks = rollout.primary_window.rates(now)
        if errors > base_errors + rule.error_margin:
            self.roll_back(rollout, f"error rate {errors:.1%} vs {base_errors:.1%} on {rollout.primary.name}")
        elif blocks > base_blocks + rule.block_margin:
            self.roll_back(rollout, f"block rate {blocks:.1%} vs {base_blocks:.1%} on {rollout.primary.name}")

    def roll_back(self, rollout: Rollout, reason: str) -> None:
        rollout.canary.traffic_weight = 0.0
        rollout.state, rollout.reason = "rolled_back", reason
        self.rollbacks += 1
        log.error("canary %s rolled back (weight 0): %s", rollout.canary.name, reason)
        self._audit("canary_rollback", rollout, "ok", reason)

    async def smoke(self, rollout: Rollout, session: aiohttp.ClientSession, policy: PolicyService | None) -> None:
        """Run once the canary has a backend to answer; pass: it gets its weight, fail: it stays at 0."""
        smoke = rollout.settings.smoke
        assert smoke is not None
        rollout.state = "smoke"
        urls = [b.url for b in rollout.canary.backends if b.available]
        model = smoke.model or next(iter(rollout.primary.literal_models), "smoke")
        problems = await run_smoke(session, urls, model, smoke, policy, rollout.canary.name)
        if problems:
            rollout.state, rollout.reason = "smoke_failed", "; ".join(problems)[:2000]
            log.error("canary %s failed its smoke test; it gets no traffic:\n  %s", rollout.canary.name,
                      "\n  ".join(problems))
            self._audit("canary_smoke", rollout, "failed", rollout.reason)
            return
        rollout.go_live()
        log.warning("canary %s passed its smoke test on %d replica(s); weight %g%%", rollout.canary.name, len(urls),
                    rollout.target)
        self._audit("canary_smoke", rollout, "ok", f"{len(smoke.prompts)} prompt(s) on {len(urls)} replica(s)")

    def set_weights(self, weights: dict[str, float]) -> None:
        """A reload's new weights: applied now where the canary is live or was rolled back."""
        for name, weight in weights.items():
            rollout = self.rollouts[name]
            rollout.target = weight
            if rollout.state in ("live", "rolled_back"):
                rollout.go_live()
            log.warning("canary %s weight set to %g%% by reload (%s)", name, weight, rollout.state)
            self._audit("canary_weight", rollout, "ok", f"weight {weight:g} ({rollout.state})")

    def _audit(self, action: str, rollout: Rollout, outcome: str, reason: str) -> None:
        if self.emit is None:
            return
        details = {"primary": rollout.primary.name, "weight": f"{rollout.canary.traffic_weight:g}",
                   "state": rollout.state, "reason": reason}
        self.emit("audit_actions", {"actor": "warden", "action": action, "target": rollout.canary.name,
                                    "tenant": "", "request_id": "", "outcome": outcome, "details": details})

    def describe(self) -> dict[str, dict[str, object]]:
        return {name: {"of": r.primary.name, "state": r.state, "weight": r.canary.traffic_weight,
                       "target": r.target, "reason": r.reason} for name, r in self.rollouts.items()}


def canary_weight_changes(old: Sequence[UpstreamGroupSettings],
                          new: Sequence[UpstreamGroupSettings]) -> dict[str, float] | None:
    """The new canary weights when they are all that changed in `upstreams`; None when anything else did."""
    def without_weights(groups: Sequence[UpstreamGroupSettings]) -> list[dict[str, Any]]:
        dumped = [g.model_dump() for g in groups]
        for group in dumped:
            if group.get("canary"):
                group["canary"]["weight"] = 0
        return dumped

    if without_weights(old) != without_weights(new):
        return None
    return {n.name: n.canary.weight for o, n in zip(old, new, strict=True)
            if n.canary is not None and o.canary is not None and o.canary.weight != n.canary.weight}
