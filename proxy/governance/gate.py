"""Governance at the door: who is asking (keys to tenants), and may they, now (limits, throttles).

`authenticate` runs in the middleware for every /v1 route; `admit` runs in the OpenAI routes
once the body is parsed, and returns an `Admission` whose `finish` settles the tokens used and
feeds the abuse monitor when the answer has ended.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from proxy.errors import AuthenticationFailed, InvalidRequest, PermissionDenied, RateLimited
from proxy.exchange import Exchange
from proxy.governance.abuse import Abuse, AbuseMonitor, Restriction
from proxy.governance.budgets import BudgetSettings, Charge, Ledger, MemoryLedger
from proxy.governance.keys import KeyIndex, StoredKey
from proxy.governance.limits import Grant, Limiter, Limits, MemoryLimiter, Refusal, duration
from proxy.governance.metrics import GovernanceMetrics
from proxy.governance.pricing import Pricing, PricingSettings
from proxy.governance.redis_limiter import RedisLimiter
from proxy.governance.settings import ANONYMOUS, GovernanceSettings, KeySettings, TenantSettings
from proxy.governance.shared import SharedLedger
from proxy.governance.spend import BUDGET_HEADER, Reservation, SpendKeeper, budget_terms
from proxy.governance.watch import Audit, KeysWatcher
from proxy.taps import Capture
from proxy.tasks import TaskOwner
from proxy.upstream import Group, UpstreamPool
from proxy.wire.texts import text_slots

log = logging.getLogger("warden.governance")
QUERY_KEY_PARAMS = frozenset({"api_key", "api-key", "apikey", "key", "access_token", "token"})
CHARS_PER_TOKEN = 4
SLOT_TTL_S = 900.0  # a concurrency slot older than this (plus a minute) is taken back in the shared limiter


@dataclass(frozen=True)
class Principal:
    tenant: str
    key_id: str  # "" when anonymous
    subject: str  # what abuse analysis follows: the key, or the client address when anonymous
    user: str = ""  # the end user named by governance.user_header (the body's `user` is read at admission)
    key: StoredKey | None = None


def estimate_tokens(text_chars: int) -> int:
    return (text_chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else ""
    return request.headers.get("x-api-key")


class Governance:
    def __init__(self, settings: GovernanceSettings, metrics: GovernanceMetrics, audit: Audit,
                 clock: Callable[[], float] = time.monotonic, pricing: Pricing | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.metrics = metrics
        self.audit = audit
        self.clock = clock
        self.wall = wall  # budgets' periods and keys' expiry are calendar time; limits run on `clock`
        zone = ZoneInfo(settings.budget_timezone)
        self.ledger: Ledger = self._ledger(settings, zone)
        self.spend = SpendKeeper(pricing or Pricing(PricingSettings()), self.ledger, metrics, audit, wall, zone)
        self._key_budgets: dict[str, BudgetSettings] = {}
        self._budget_terms: dict[str, str] | None = None  # None until the first apply: no audit rows at start
        self.background = TaskOwner("governance")
        self.limiter: Limiter = MemoryLimiter()
        if settings.limiter == "redis":
            self.limiter = RedisLimiter(settings.redis_url, settings.redis_prefix, settings.redis_fail_open,
                                        lambda op: metrics.limiter_errors[op].inc())
        self.abuse: Abuse = AbuseMonitor(settings.abuse, self._restriction_changed)
        self._config_keys: list[StoredKey] = []
        self._file_keys: list[StoredKey] = []
        self.index = KeyIndex([])
        self.watcher: KeysWatcher | None = None  # set while a keys file is watched
        self.apply(settings)

    def _ledger(self, settings: GovernanceSettings, zone: ZoneInfo) -> Ledger:
        if settings.limiter == "redis":
            from proxy.governance.redis_budgets import RedisLedger

            return RedisLedger(settings.redis_url, settings.redis_prefix + "budget:", zone,
                               lambda op: self.metrics.limiter_errors[op].inc())
        return MemoryLedger(zone)

    async def close(self, grace_s: float) -> None:
        await self.background.close(grace_s)
        await self.limiter.close()
        await self.ledger.close()

    def apply(self, settings: GovernanceSettings) -> None:
        """A new (validated) governance section: keys and limits change on the next request."""
        self.settings = settings
        self.abuse.settings = settings.abuse
        self._config_keys = [_stored(k) for k in settings.keys]
        self._rebuild()

    def set_file_keys(self, keys: list[StoredKey]) -> None:
        self._file_keys = keys
        self._rebuild()

    def _rebuild(self) -> None:
        """The key index and the budgets it names; a budget set, changed or dropped is an audit row."""
        keys = self._file_keys + self._config_keys
        self.index = KeyIndex(keys)
        self._key_budgets = {k.id: BudgetSettings.model_validate(k.budget) for k in keys
                             if k.active and k.budget is not None}
        terms = budget_terms(self.settings, self._key_budgets)
        if self._budget_terms is not None:
            self.spend.changed(self._budget_terms, terms)
        self._budget_terms = terms

    def all_keys(self) -> list[StoredKey]:
        return self._file_keys + self._config_keys

    # -- who is asking --------------------------------------------------------------------
    def authenticate(self, request: web.Request) -> Principal:
        if not self.settings.allow_query_keys and QUERY_KEY_PARAMS.intersection(k.lower() for k in request.query):
            self.metrics.auth_failures.labels("key_in_url").inc()
            raise InvalidRequest("API keys are not accepted in the URL (they end up in logs); send "
                                 "'Authorization: Bearer KEY'", code="key_in_url")
        if not self.settings.keys_configured:
            return Principal(ANONYMOUS, "", "ip:" + (request.remote or "-"))
        token = _bearer(request)
        if not token:
            self.metrics.auth_failures.labels("missing").inc()
            raise AuthenticationFailed("no API key given: send 'Authorization: Bearer KEY'", code="missing_api_key")
        entry = self.index.match(token)
        if entry is None:
            self.metrics.auth_failures.labels("invalid").inc()
            raise AuthenticationFailed("the API key is not valid (unknown, revoked or mistyped)")
        if entry.expired(self.wall()):
            self.metrics.auth_failures.labels("expired").inc()
            assert entry.expires_at is not None
            when = datetime.fromtimestamp(entry.expires_at, UTC).isoformat(timespec="seconds")
            raise AuthenticationFailed(f"the API key expired at {when}", code="key_expired")
        return Principal(entry.tenant, entry.id, "key:" + entry.id, self._header_user(request), entry)

    def _header_user(self, request: web.Request) -> str:
        header = self.settings.user_header
        return request.headers.get(header, "") if header else ""

    # -- may they, now ------------------------------------------------------------------
    def group_for(self, principal: Principal, model: str | None, pool: UpstreamPool) -> Group | None:
        """A pinned tenant uses its own group on every route; others never land on a group pinned to someone.

        With no model (a request whose body names none), the tenant's default: its pinned group, else
        the pool's default group when no tenant has it pinned, else the first group nobody has pinned.
        """
        tenant = self.settings.tenant(principal.tenant)
        if tenant.upstream_group is not None:
            return next((g for g in pool.groups if g.name == tenant.upstream_group), None)
        dedicated = {t.upstream_group for t in self.settings.tenants.values() if t.upstream_group}
        if model is not None:
            return next((g for g in pool.groups if g.name not in dedicated and g.matches(model)), None)
        if pool.default_group.name not in dedicated:
            return pool.default_group
        return next((g for g in pool.groups if g.name not in dedicated and g.canary_of is None), None)

    def may_use(self, principal: Principal, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, p) for p in self.settings.tenant(principal.tenant).models)

    def check_unnamed(self, principal: Principal, readable: bool) -> None:
        """A body that names no model gets the upstream's default model, which an allow-list is meant to
        govern: a tenant limited to some models must name one Warden can read (what it cannot read, it
        cannot judge). A request with no body (GET /v1/files) is never refused here."""
        if "*" in self.settings.tenant(principal.tenant).models:
            return
        self._refuse(principal, "model_not_allowed")
        if readable:
            raise InvalidRequest("'model' is required: this key may use only some models", param="model",
                                 code="missing_model")
        raise InvalidRequest("this key may use only some models, and this body names none Warden can read: "
                             "send a JSON object with 'model'", code="unreadable_body")

    async def admit(self, principal: Principal, exchange: Exchange, model: str | None,
                    payload: dict[str, Any] | None) -> Admission:
        now = self.clock()
        tenant = self.settings.tenant(principal.tenant)
        await self._check_restriction(principal, now)
        if model is not None and not self.may_use(principal, model):
            self._refuse(principal, "model_not_allowed")
            raise PermissionDenied(f"this key may not use the model '{model}'", param="model",
                                   code="model_not_allowed")
        prompt_chars = 0
        if payload is not None:
            texts = [slot.get() for slot in text_slots(payload)]  # one walk serves the size check and abuse
            self._check_size(principal, tenant, payload, texts)
            prompt_chars = sum(map(len, texts))
            self.abuse.observe_prompt(principal.subject, principal.tenant, "\n".join(texts), now)
        charged = estimate_tokens(prompt_chars)
        slot_ttl_s = (tenant.timeout_s or SLOT_TTL_S) + 60
        key, key_grant = principal.key, None
        if key is not None and (key.requests_per_minute or key.tokens_per_minute):
            key_limits = Limits(key.requests_per_minute, key.tokens_per_minute, None, slot_ttl_s)
            key_grant = self._granted(principal, await self.limiter.admit(
                "key:" + key.id, key_limits, charged, exchange.request_id + ":key", now), now)
        limits = Limits(tenant.requests_per_minute, tenant.tokens_per_minute, tenant.max_concurrency, slot_ttl_s)
        granted: Grant | None = None
        try:
            granted = self._granted(principal, await self.limiter.admit(
                principal.tenant, limits, charged, exchange.request_id, now), now)
            exchange.user = principal.user[:128] or self.spend.user_of("", payload)
            refs = self.spend.refs(principal.tenant, tenant.budget, tenant.user_budget, principal.key_id,
                                   self._key_budgets.get(principal.key_id), exchange.user)
            reservation = await self.spend.charge(model, refs, charged, payload, now)
        except RateLimited:
            if key_grant is not None:
                self.settle_grant(key_grant, key.tokens_per_minute if key else None, charged, 0, now)
            if granted is not None:
                self.settle_grant(granted, tenant.tokens_per_minute, charged, 0, now)
            raise
        admission = Admission(self, principal, granted, charged, tenant.tokens_per_minute)
        admission.key_grant, admission.reservation = key_grant, reservation
        if reservation.charge is not None and reservation.charge.remaining is not None:
            granted.headers = {**granted.headers, BUDGET_HEADER: f"{reservation.charge.remaining:.6g}"}
        if tenant.timeout_s is not None:
            exchange.deadline = _loop_time() + tenant.timeout_s
        if granted.headers:
            exchange.response_headers = granted.headers
        if granted.counts_tokens:
            admission.capture = Capture()
            exchange.taps.append(admission.capture)
        return admission

    def _granted(self, principal: Principal, granted: Grant | Refusal, now: float) -> Grant:
        if isinstance(granted, Refusal):
            self._refuse(principal, granted.code)
            self.abuse.observe_refused(principal.subject, principal.tenant, now)
            raise RateLimited(granted.message, code=granted.code,
                              headers={"Retry-After": str(max(1, round(granted.retry_after_s))), **granted.headers})
        return granted

    def settle_grant(self, grant: Grant, tokens_per_minute: int | None, charged: int, used: int, now: float) -> None:
        """Give back a slot and pay the token difference: at once in memory (the next request may take the
        slot), in the background for the shared limiters."""
        if isinstance(self.limiter, MemoryLimiter):
            self.limiter.release(grant, charged, used, now)
        else:
            self.background.spawn(self.limiter.settle(grant, tokens_per_minute, charged, used, now), "settle")

    def _check_size(self, principal: Principal, tenant: TenantSettings, payload: dict[str, Any],
                    texts: list[str]) -> None:
        for name in ("max_tokens", "max_completion_tokens"):
            asked = payload.get(name)
            if tenant.max_tokens is not None and isinstance(asked, int) and asked > tenant.max_tokens:
                self._refuse(principal, "max_tokens")
                raise InvalidRequest(f"'{name}' is {asked}; this key allows at most {tenant.max_tokens}",
                                     param=name, code="max_tokens_exceeded")
        if tenant.max_context_tokens is not None:
            estimate = estimate_tokens(sum(map(len, texts)))
            if estimate > tenant.max_context_tokens:
                self._refuse(principal, "context")
                raise InvalidRequest(f"the prompt is about {estimate} tokens; this key allows at most "
                                     f"{tenant.max_context_tokens}", param="messages", code="context_length_exceeded")

    async def _check_restriction(self, principal: Principal, now: float) -> None:
        """Asked of the abuse monitor (under --workers, the host's one in the supervisor: a round trip)."""
        hold = await self.abuse.check(principal.subject, now)
        if hold is None:
            return
        restriction = hold.restriction
        retry = {"Retry-After": str(max(1, round(hold.retry_after_s)))}
        if restriction.kind == "suspend":
            self._refuse(principal, "suspended")
            raise PermissionDenied(f"suspended for abuse ({restriction.reason}); lifts in "
                                   f"{duration(restriction.until - now)}", code="key_suspended", headers=retry)
        self._refuse(principal, "throttled")
        raise RateLimited(f"throttled for abuse ({restriction.reason}); {self.settings.abuse.throttle_rpm} "
                          f"requests a minute until it lifts", code="abuse_throttled", headers=retry)

    def _refuse(self, principal: Principal, reason: str) -> None:
        self.metrics.refusals.labels(principal.tenant, reason).inc()

    def _restriction_changed(self, action: str, restriction: Restriction) -> None:
        self.metrics.abuse_actions.labels(restriction.tenant, action).inc()
        log.warning("abuse %s for %s (tenant %s): %s", action, restriction.subject, restriction.tenant,
                    restriction.reason)
        actor = "admin" if action == "lift" else "warden"
        self.audit(actor, f"abuse_{action}", restriction.subject, restriction.tenant, "ok",
                   {"reason": restriction.reason, "kind": restriction.kind,
                    "until_s": f"{max(0.0, restriction.until - self.clock()):.0f}"})

    def restriction_counts(self) -> dict[tuple[str, str], int]:
        now = self.clock()
        counts: dict[tuple[str, str], int] = {}
        for r in list(self.abuse.restrictions.values()):
            if r.until > now:
                counts[(r.tenant, r.kind)] = counts.get((r.tenant, r.kind), 0) + 1
        return counts


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


def _stored(key: KeySettings) -> StoredKey:
    return StoredKey(key.id, key.tenant, key.sha256, key.name, source="config",
                     expires_at=key.expires_at.timestamp() if key.expires_at is not None else None,
                     requests_per_minute=key.requests_per_minute, tokens_per_minute=key.tokens_per_minute,
                     budget=key.budget.model_dump() if key.budget is not None else None, metadata=dict(key.metadata))


class Admission:
    """One admitted request's claim on its tenant's limits, settled once when its answer ends."""

    def __init__(self, gate: Governance, principal: Principal, grant: Grant, charged: int,
                 tokens_per_minute: int | None) -> None:
        self.gate = gate
        self.principal = principal
        self.grant = grant
        self.charged = charged
        self.tokens_per_minute = tokens_per_minute
        self.capture: Capture | None = None
        self.key_grant: Grant | None = None  # the key's own limits, when it has some
        self.reservation: Reservation | None = None
        self._done = False

    def finish(self, exchange: Exchange) -> None:
        if self._done:
            return
        self._done = True
        used = exchange.prompt_tokens + exchange.completion_tokens
        output = 0
        if not used:  # no usage reported (most streams): estimate from what was sent
            output = estimate_tokens(len(self.capture.text())) if self.capture is not None and self.capture.ended else 0
            used = self.charged + output
        now = self.gate.clock()
        gate = self.gate
        gate.settle_grant(self.grant, self.tokens_per_minute, self.charged, used, now)
        if self.key_grant is not None and self.principal.key is not None:
            gate.settle_grant(self.key_grant, self.principal.key.tokens_per_minute, self.charged, used, now)
        if self.reservation is not None:
            self._settle_spend(exchange, self.reservation, output, now)
        gate.metrics.tokens.labels(self.principal.tenant).inc(used)
        labels = [f.label for f in exchange.verdict.findings if f.action != "allow"]
        gate.abuse.observe_outcome(self.principal.subject, self.principal.tenant, exchange.verdict.action,
                                        labels, now)

    def _settle_spend(self, exchange: Exchange, reservation: Reservation, output: int, now: float) -> None:
        """The cost onto the record now (the row is written next); the ledger at once in memory, so the next
        request meets the settled budget, else in the background."""
        spend = self.gate.spend
        cost = spend.cost(exchange, reservation, self.charged, output, now)
        charge = reservation.charge
        if charge is None:
            return
        ledger = spend.ledger
        if isinstance(ledger, MemoryLedger | SharedLedger):
            spend.crossed(ledger.settle_now(charge, cost, spend.wall()))
        else:
            self.gate.background.spawn(self._settle_ledger(ledger, charge, cost), "settle_budget")

    async def _settle_ledger(self, ledger: Ledger, charge: Charge, cost: float) -> None:
        spend = self.gate.spend
        spend.crossed(await ledger.settle(charge, cost, spend.wall()))
