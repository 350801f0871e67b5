"""Limits exact across the proxy workers of one host: one owner, the supervisor, without Redis.

`warden serve --workers N` runs N event loops; a limiter in each would admit N times a tenant's
limit. The supervisor runs the one in-memory limiter (limits.py, `MemoryLimiter`) behind a local
socket, on its own event loop, so every check-and-take is atomic for the whole host; each worker
asks it (`SharedLimiter`, one round trip per admission). A worker that dies gives its
concurrency slots back at once (end of its stream), not after a TTL. Redis stays the answer for
several hosts. The same connection answers readiness (`status`) and carries the supervisor's own
metrics (`metrics`).

Abuse state has the same one owner: the supervisor's `AbuseMonitor` hears every worker's
observations (one-way frames, in each worker's order) and answers each admission's check (one
round trip), so a subject spread over N workers is throttled as soon as one process would throttle
it. Exact by ordering: a worker sends an observation before its answer's last byte, so it is in
the supervisor's socket before the client's next request reaches any worker; the supervisor
yields once before answering a check, so every frame already readable is judged first. Changes
are pushed to every worker (`ABUSE_CHANGE`): their copy serves `GET /admin/abuse` and the
gauge, and the worker whose frame caused a change audits and counts it, once for the host.

Budgets too: the supervisor's one `MemoryLedger` takes every worker's charge (one round trip per
admission, atomic on its loop, so a hard budget admits exactly what it holds across the host) and
settle (one-way, sent as the answer ends; the supervisor yields before a charge, as before a check,
so settles already readable count first). It answers a settle with the thresholds crossed, which
the settling worker audits (once for the host), and the tenants' spent shares for the gauge. A
worker that dies frees its reservations at once, as its concurrency slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from proxy.governance.abuse import AbuseMonitor, Hold, Restriction, prompt_hashes
from proxy.governance.budgets import BudgetRef, BudgetRefusal, BudgetSettings, Charge, Crossing, MemoryLedger
from proxy.governance.limits import Grant, Limits, MemoryLimiter, Refusal
from proxy.governance.settings import AbuseSettings
from proxy.telemetry.wire import (
    ABUSE,
    ABUSE_CHANGE,
    ADMIT,
    BUDGET,
    BUDGET_SETTLED,
    METRICS,
    READY,
    RELOAD,
    SETTLE,
    STATUS,
    FrameError,
    Link,
    Peer,
    read_frame,
)

log = logging.getLogger("warden.governance.shared")


class HubServer:
    """The supervisor's side: the host's limiter, and what it knows of its processes."""

    def __init__(self, socket_path: Path, status: Callable[[], dict[str, Any]],
                 metrics: Callable[[], str], on_ready: Callable[[int], None], *,
                 abuse: AbuseSettings | None = None, on_reload: Callable[[int], None] = lambda index: None) -> None:
        """`on_reload(index)`: worker `index` reloaded its config (an admin call); the others should too."""
        self.socket_path = socket_path
        self.limiter = MemoryLimiter()
        self.abuse = AbuseMonitor(abuse or AbuseSettings(), self._abuse_changed)
        self.ledger = MemoryLedger(ZoneInfo("UTC"))  # the zone follows each charge's (a reload may change it)
        self._budgets: dict[str, BudgetSettings] = {}  # terms as sent -> parsed: validated once, not per charge
        self._status = status
        self._metrics = metrics
        self._on_ready = on_ready
        self._on_reload = on_reload
        self._server: asyncio.AbstractServer | None = None
        self._streams: set[asyncio.StreamWriter] = set()
        self._peers: set[Peer] = set()
        self._cause: Peer | None = None  # the peer whose frame is being judged: it audits what that changes

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.socket_path))
        os.chmod(self.socket_path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for stream in list(self._streams):
            stream.close()

    async def _serve(self, reader: asyncio.StreamReader, stream: asyncio.StreamWriter) -> None:
        peer = Peer(stream)
        self._streams.add(stream)
        self._peers.add(peer)
        held: dict[str, str] = {}  # slot -> tenant: concurrency this worker holds
        reserved: dict[int, Charge] = {}  # ticket -> charge: budget this worker's requests in flight reserved
        try:
            while True:
                kind, body = await read_frame(reader)
                if kind == ABUSE:
                    if body[1] == "check":
                        await asyncio.sleep(0)  # what other workers already sent is judged first
                    self._cause = peer
                    try:
                        answer = self._abuse(*body[1:])
                    finally:
                        self._cause = None
                    if body[0]:
                        peer.reply(body[0], True, answer)
                elif kind == ADMIT:
                    peer.reply(body[0], True, self._admit(held, *body[1:]))
                elif kind == BUDGET:
                    if body[1] == "charge":
                        await asyncio.sleep(0)  # settles other workers already sent count first
                        peer.reply(body[0], True, self._charge(reserved, *body[2:]))
                    else:
                        self._settle(peer, reserved, *body[2:])
                elif kind == SETTLE:
                    tenant, slot, charged, used = body
                    if held.pop(slot, None) is not None:
                        self.limiter.release(Grant(tenant, slot, {}, False), charged, used, time.monotonic())
                elif kind == STATUS:
                    peer.reply(body[0], True, self._status())
                elif kind == METRICS:
                    peer.reply(body[0], True, self._metrics())
                elif kind == READY:
                    self._on_ready(int(body))
                elif kind == RELOAD:
                    self._on_reload(int(body))
        except (asyncio.IncompleteReadError, ConnectionError, FrameError, OSError):
            pass
        finally:
            self._streams.discard(stream)
            self._peers.discard(peer)
            now = time.monotonic()
            for slot, tenant in held.items():  # a worker gone (crash or stop): its slots are free again
                self.limiter.release(Grant(tenant, slot, {}, False), 0, 0, now)
            wall = time.time()
            for charge in reserved.values():  # and its reservations: what they cost is unknown, so nothing
                self.ledger.settle_now(charge, 0.0, wall)
            stream.close()

    def _abuse(self, op: str, *args: Any) -> Any:
        monitor = self.abuse
        if op == "check":
            hold = monitor.hold(*args)
            return None if hold is None else (astuple(hold.restriction), hold.retry_after_s)
        if op == "prompt":
            subject, tenant, hashes, now = args
            monitor.observe_hashes(subject, tenant, tuple(hashes) if hashes else None, now)
        elif op == "outcome":
            monitor.observe_outcome(*args)
        elif op == "refused":
            monitor.observe_refused(*args)
        elif op == "lift":
            monitor.lift(*args)
        elif op == "settings":
            monitor.settings = AbuseSettings.model_validate(args[0])
        elif op == "list":
            return [astuple(r) for r in monitor.restrictions.values()]
        return None

    def _abuse_changed(self, action: str, restriction: Restriction) -> None:
        for peer in self._peers:
            peer.send(ABUSE_CHANGE, (action, astuple(restriction), peer is self._cause))

    def _admit(self, held: dict[str, str], tenant: str, rpm: int | None, tpm: int | None, concurrency: int | None,
               charge: int, slot: str) -> tuple[Any, ...]:
        limits = Limits(rpm, tpm, concurrency, slot_ttl_s=0.0)  # no TTL: a dead worker's slots free at once
        granted = self.limiter.admit_now(tenant, limits, charge, slot, time.monotonic())
        if isinstance(granted, Refusal):
            return (False, granted.code, granted.message, granted.retry_after_s, granted.headers)
        held[slot] = tenant
        return (True, granted.headers, granted.counts_tokens)


    def _terms(self, terms: str) -> BudgetSettings:
        budget = self._budgets.get(terms)
        if budget is None:
            if len(self._budgets) > 1024:  # keys' budgets come and go with reloads
                self._budgets.clear()
            budget = self._budgets[terms] = BudgetSettings.model_validate_json(terms)
        return budget

    def _charge(self, reserved: dict[int, Charge], ticket: int, refs: list[tuple[str, str, str, str]],
                estimate: float, now: float, zone: str) -> tuple[Any, ...]:
        if str(self.ledger.zone) != zone:
            self.ledger.zone = ZoneInfo(zone)
        parsed = tuple(BudgetRef(scope, name, tenant, self._terms(terms))  # type: ignore[arg-type]
                       for scope, name, tenant, terms in refs)
        charged = self.ledger.charge_now(parsed, estimate, now)
        if isinstance(charged, BudgetRefusal):
            return (False, parsed.index(charged.ref), charged.spent, charged.resets_at)
        reserved[ticket] = charged
        return (True, charged.remaining)

    def _settle(self, peer: Peer, reserved: dict[int, Charge], ticket: int, cost: float, now: float) -> None:
        charge = reserved.pop(ticket, None)
        if charge is None:
            return
        crossings = self.ledger.settle_now(charge, cost, now)
        ratios = {}
        for ref in charge.refs:
            if ref.scope == "tenant":
                account = self.ledger.account(ref, now)
                ratios[ref.tenant] = account.spent / account.budget.amount
        peer.send(BUDGET_SETTLED, ([(*_wire_ref(c.ref), c.threshold, c.spent) for c in crossings], ratios))


def _wire_ref(ref: BudgetRef) -> tuple[str, str, str, str]:
    return (ref.scope, ref.name, ref.tenant, ref.budget.model_dump_json())


class HubLink:
    """A worker's connection to the supervisor; requests fail (ConnectionError) while it is away."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.link: Link | None = None
        self.pushed: dict[int, Callable[[Any], None]] = {}  # frame kind -> who hears the supervisor's pushes

    async def open(self) -> None:
        self.link = await Link.connect(str(self.path), on_frame=self._pushed)

    def _pushed(self, kind: int, body: Any) -> None:
        handler = self.pushed.get(kind)
        if handler is not None:
            handler(body)

    async def request(self, kind: int, *body: Any, timeout_s: float = 5.0) -> Any:
        if self.link is None or not self.link.open:
            raise ConnectionError("the supervisor is not reachable")
        return await self.link.request(kind, body, timeout_s)

    def send(self, kind: int, body: Any) -> None:
        if self.link is not None and self.link.open:
            self.link.send(kind, body)

    async def status(self) -> dict[str, Any]:
        return dict(await self.request(STATUS, timeout_s=2.0))

    async def metrics(self) -> str:
        return str(await self.request(METRICS, timeout_s=2.0))

    async def close(self) -> None:
        if self.link is not None:
            await self.link.close()


class SharedLimiter:
    """The `Limiter` of a worker: every admission asked of the supervisor's one limiter."""

    def __init__(self, hub: HubLink) -> None:
        self.hub = hub

    async def admit(self, tenant: str, limits: Limits, charge: int, slot: str, now: float) -> Grant | Refusal:
        try:
            answer = await self.hub.request(ADMIT, tenant, limits.requests_per_minute, limits.tokens_per_minute,
                                            limits.max_concurrency, charge, slot)
        except (ConnectionError, TimeoutError) as exc:
            log.warning("the supervisor's limiter is unreachable (%s): refusing", exc)
            return Refusal("limiter_unavailable", "the host's rate limiter is unavailable; retry shortly", 1.0)
        if answer[0]:
            return Grant(tenant, slot, dict(answer[1]), bool(answer[2]))
        return Refusal(answer[1], answer[2], float(answer[3]), dict(answer[4]))

    async def settle(self, grant: Grant, tokens_per_minute: int | None, charged: int, used: int,
                     now: float) -> None:
        self.hub.send(SETTLE, (grant.tenant, grant.slot, charged, used))

    async def close(self) -> None:
        pass  # the link belongs to the worker (proxy/app/worker.py)


@dataclass
class SharedCharge(Charge):
    """A charge the supervisor holds, named by a ticket unique on this worker's connection."""

    ticket: int = 0


class SharedLedger:
    """The `Ledger` of a worker: every charge and settle goes to the supervisor's one ledger. Crossings come
    back with the settle's answer (`on_crossed` audits them); `used_ratios` is the last answer's view."""

    def __init__(self, hub: HubLink, zone: ZoneInfo, on_crossed: Callable[[list[Crossing]], None]) -> None:
        self.hub = hub
        self.zone = zone
        self.on_crossed = on_crossed
        self.ratios: dict[str, float] = {}
        self._tickets = 0
        hub.pushed[BUDGET_SETTLED] = self._settled

    async def charge(self, refs: tuple[BudgetRef, ...], estimate: float, now: float) -> Charge | BudgetRefusal:
        self._tickets += 1
        ticket = self._tickets
        try:
            answer = await self.hub.request(BUDGET, "charge", ticket, [_wire_ref(r) for r in refs], estimate, now,
                                            str(self.zone))
        except (ConnectionError, TimeoutError) as exc:  # a hard budget cannot be kept blind: refuse for a moment
            log.warning("the supervisor's budget ledger is unreachable (%s)", exc)
            hard = next((r for r in refs if r.budget.mode == "hard"), None)
            if hard is not None:
                return BudgetRefusal(hard, 0.0, now + 1.0)
            return Charge(refs, estimate, None)
        if not answer[0]:
            return BudgetRefusal(refs[answer[1]], float(answer[2]), float(answer[3]))
        return SharedCharge(refs, estimate, answer[1], ticket=ticket)

    async def settle(self, charge: Charge, cost: float, now: float) -> list[Crossing]:
        return self.settle_now(charge, cost, now)

    def settle_now(self, charge: Charge, cost: float, now: float) -> list[Crossing]:
        """Sent at once (before the answer's last byte), so the next charge anywhere meets it; the crossings
        arrive with the supervisor's answer."""
        if isinstance(charge, SharedCharge):
            self.hub.send(BUDGET, (0, "settle", charge.ticket, cost, now))
        return []

    def _settled(self, body: Any) -> None:
        crossed, ratios = body
        self.ratios.update(ratios)
        if crossed:
            self.on_crossed([Crossing(BudgetRef(scope, name, tenant,
                                                BudgetSettings.model_validate_json(terms)), threshold, spent)
                             for scope, name, tenant, terms, threshold, spent in crossed])

    def used_ratios(self, now: float) -> dict[str, float]:
        return dict(self.ratios)

    async def close(self) -> None:
        pass  # the link belongs to the worker


class SharedAbuse:
    """A worker's `Abuse`: observations and checks go to the supervisor's one monitor; `restrictions` is a
    copy kept current by its pushes (for the admin API and the gauge)."""

    def __init__(self, hub: HubLink, settings: AbuseSettings, on_change: Callable[[str, Restriction], None]) -> None:
        self.hub = hub
        self.on_change = on_change
        self.restrictions: dict[str, Restriction] = {}
        self._settings = settings
        hub.pushed[ABUSE_CHANGE] = self._changed

    async def attach(self) -> None:
        """Our settings to the owner, and what is in force now (a restarted worker starts with the host's view)."""
        self.settings = self._settings
        for fields in await self.hub.request(ABUSE, "list"):
            restriction = Restriction(*fields)
            self.restrictions[restriction.subject] = restriction

    @property
    def settings(self) -> AbuseSettings:
        return self._settings

    @settings.setter
    def settings(self, value: AbuseSettings) -> None:  # a reload: the owner judges by the new lines
        self._settings = value
        self.hub.send(ABUSE, (0, "settings", value.model_dump(mode="json")))

    async def check(self, subject: str, now: float) -> Hold | None:
        if not self._settings.enabled and not self.restrictions:
            return None
        try:
            answer = await self.hub.request(ABUSE, "check", subject, now, timeout_s=2.0)
        except (ConnectionError, TimeoutError) as exc:  # the limiter refuses meanwhile (it asks the same owner)
            log.warning("the supervisor's abuse monitor is unreachable (%s): not checked", exc)
            return None
        return None if answer is None else Hold(Restriction(*answer[0]), float(answer[1]))

    def observe_prompt(self, subject: str, tenant: str, prompt: str, now: float) -> None:
        if self._settings.enabled:
            hashes = prompt_hashes(prompt, self._settings.template_prefix_chars)
            self.hub.send(ABUSE, (0, "prompt", subject, tenant, hashes, now))

    def observe_outcome(self, subject: str, tenant: str, action: str, labels: list[str], now: float) -> None:
        if self._settings.enabled:
            self.hub.send(ABUSE, (0, "outcome", subject, tenant, action, labels, now))

    def observe_refused(self, subject: str, tenant: str, now: float) -> None:
        if self._settings.enabled:
            self.hub.send(ABUSE, (0, "refused", subject, tenant, now))

    def lift(self, subject: str) -> Restriction | None:
        """Lifted here at once, and for the host by the owner, whose push makes this worker audit it."""
        found = self.restrictions.pop(subject, None)
        if found is not None:
            self.hub.send(ABUSE, (0, "lift", subject))
        return found

    def _changed(self, body: Any) -> None:
        action, fields, ours = body
        restriction = Restriction(*fields)
        if action in ("throttle", "suspend"):
            self.restrictions[restriction.subject] = restriction
        else:
            self.restrictions.pop(restriction.subject, None)
        if ours:
            self.on_change(action, restriction)


@dataclass(frozen=True)
class WorkerRole:
    """What a proxy worker started by the supervisor knows of its place: its number, its siblings, the sockets."""

    index: int
    workers: int
    run_dir: Path
    hub: HubLink
    admin_fd: int | None = None  # worker 0's copy of the supervisor's admin socket (admin.listen)

    def sibling_socket(self, index: int) -> Path:
        return self.run_dir / f"worker-{index}.sock"


WORKER = web.AppKey("warden_worker", WorkerRole)


async def wait_for(path: Path, timeout_s: float) -> None:
    """Until something listens at `path` (a starting process), or TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(OSError):
            link = await Link.connect(str(path), timeout_s=1.0)
            await link.close()
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens at {path} after {timeout_s:g}s")
        await asyncio.sleep(0.05)
