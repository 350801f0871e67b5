"""Config reload without a restart (SIGHUP or `POST /admin/reload`).

The file is read and validated whole first; a config with any error is rejected, its errors
are returned and audited, and the running config stays. A good one takes effect at once for
the sections that can change under traffic (governance, policy); a change to any other section
is reported as needing a restart and is not applied, so the running process never mixes the two.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from proxy.codeploy.rollout import canary_weight_changes
from proxy.settings import ConfigError, WardenSettings, load_settings
from proxy.state import ProxyState

log = logging.getLogger("warden.reload")
LIVE_SECTIONS = ("governance", "policy")


@dataclass
class ReloadResult:
    ok: bool
    applied: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def body(self) -> dict[str, object]:
        return {"ok": self.ok, "applied": self.applied, "restart_needed": self.restart_needed, "errors": self.errors}


def _emit_audit(state: ProxyState, actor: str, result: ReloadResult) -> None:
    if state.telemetry is None:
        return
    details = {"applied": ",".join(result.applied), "restart_needed": ",".join(result.restart_needed),
               "errors": "\n".join(result.errors)[:4000]}
    state.telemetry.emit("audit_actions", {"actor": actor, "action": "config_reload",
                                           "target": str(state.config_path or ""), "tenant": "",
                                           "request_id": "", "outcome": "ok" if result.ok else "rejected",
                                           "details": details})


async def reload_config(state: ProxyState, actor: str) -> ReloadResult:
    if state.config_path is None:
        result = ReloadResult(False, errors=["this Warden was not started from a config file (--config)"])
        _emit_audit(state, actor, result)
        return result
    try:
        new = await asyncio.to_thread(load_settings, state.config_path)
    except ConfigError as exc:
        result = ReloadResult(False, errors=exc.problems)
        log.error("config reload rejected; the running config stays:\n  %s", "\n  ".join(exc.problems))
        _emit_audit(state, actor, result)
        return result
    result = apply_live(state, new)
    log.info("config reloaded: applied %s; restart needed for %s", result.applied or "nothing",
             result.restart_needed or "nothing")
    _emit_audit(state, actor, result)
    return result


def apply_live(state: ProxyState, new: WardenSettings) -> ReloadResult:
    old = state.settings
    changed = [name for name in WardenSettings.model_fields if getattr(old, name) != getattr(new, name)]
    result = ReloadResult(True)
    result.restart_needed = [name for name in changed if name not in LIVE_SECTIONS]
    keep = {name: getattr(old, name) for name in WardenSettings.model_fields if name not in LIVE_SECTIONS}
    # Canary weights are live (a blue/green switch by reload); any other upstream change needs a restart.
    weights = canary_weight_changes(old.upstreams, new.upstreams) if "upstreams" in changed else None
    if weights is not None and state.rollouts is not None:
        state.rollouts.set_weights(weights)
        result.restart_needed.remove("upstreams")
        result.applied.append("upstreams (canary weights)")
        keep["upstreams"] = new.upstreams
    merged = new.model_copy(update=keep)
    if "governance" in changed:
        if state.governance is not None:
            state.governance.apply(merged.governance)
            result.applied.append("governance")
        else:
            result.restart_needed.append("governance")
    if "policy" in changed:
        if state.policy is not None:
            state.policy.apply(merged.policy)
            result.applied.append("policy")
        else:
            result.applied.append("policy (no detectors run, so it has no effect yet)")
    state.settings = merged
    return result
