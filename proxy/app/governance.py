"""Starting and stopping governance with the app: the gate, its metrics, the keys-file watcher, audit rows."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from proxy.governance.gate import Governance
from proxy.governance.metrics import GovernanceMetrics
from proxy.governance.pricing import Pricing, capacities
from proxy.governance.settings import GovernanceSettings
from proxy.governance.watch import Audit, KeysWatcher
from proxy.state import ProxyState

log = logging.getLogger("warden.audit")


def audit_for(state: ProxyState) -> Audit:
    """Audit rows go to telemetry when it runs, and to the log always (the trail survives telemetry off)."""

    def audit(actor: str, action: str, target: str, tenant: str, outcome: str, details: dict[str, str]) -> None:
        log.info("audit: %s %s %s tenant=%s outcome=%s %s", actor, action, target, tenant, outcome, details)
        if state.telemetry is not None:
            state.telemetry.emit("audit_actions", {"actor": actor, "action": action, "target": target,
                                                   "tenant": tenant, "request_id": "", "outcome": outcome,
                                                   "details": details})

    return audit


def governance_ctx(state: ProxyState) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = state.settings.governance
        if settings == GovernanceSettings() and not state.settings.pricing.models:
            yield  # nothing configured: no gate on the request path at all
            return
        audit = audit_for(state)
        holder: list[Governance] = []
        metrics = GovernanceMetrics(state.registry, lambda: holder[0].restriction_counts() if holder else {},
                                    lambda: holder[0].ledger.used_ratios(holder[0].wall()) if holder else {})
        pricing = Pricing(state.settings.pricing, capacities(state.settings.upstreams))
        gate = Governance(settings, metrics, audit, pricing=pricing)
        holder.append(gate)
        if settings.keys_file is not None:
            gate.watcher = KeysWatcher(gate, Path(settings.keys_file), audit)
            await gate.watcher.start()
        if settings.keys_configured:
            log.info("governance on: %d key(s); anonymous access is off", len(gate.index))
        else:
            log.warning("governance on without keys: every client is the anonymous tenant")
        state.governance = gate
        try:
            yield
        finally:
            state.governance = None
            if gate.watcher is not None:
                await gate.watcher.stop()
            await gate.close(state.settings.server.shutdown_grace_s)

    return ctx
