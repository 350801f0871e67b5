"""Abuse pattern analysis per subject (an API key, or the client address when anonymous).

Four signals over a sliding window: the share of requests policy blocked, requests carrying
injection or jailbreak findings, requests refused by rate limits (a flood), and systematic
querying: many prompts that share a template prefix while their tails vary, the shape of an
extraction or enumeration run. Crossing any line throttles the subject for a while; repeated
throttles within a day become a suspension. Both expire on their own; an admin can lift them.

`AbuseMonitor` is the state and the judgement; `Abuse` is what the gate asks of it, so that under
`warden serve --workers N` one monitor in the supervisor judges the whole host's traffic
(proxy/governance/shared.py `SharedAbuse`) and a subject spread over N workers is throttled as
soon as it would be by one process.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from proxy.governance.limits import TokenBucket
from proxy.governance.settings import AbuseSettings

MAX_SUBJECTS = 100_000  # least recently seen subjects are forgotten beyond this: memory stays bounded
DAY_S = 86_400.0


@dataclass
class Restriction:
    subject: str
    tenant: str
    kind: str  # "throttle" or "suspend"
    reason: str
    until: float


@dataclass(frozen=True)
class Hold:
    """A restricted subject's request refused now: the restriction, and the Retry-After it earns."""

    restriction: Restriction
    retry_after_s: float


class Abuse(Protocol):
    """What the gate and the admin API use: this process's monitor, or the host's through the supervisor."""

    settings: AbuseSettings
    on_change: Callable[[str, Restriction], None]
    restrictions: dict[str, Restriction]

    async def check(self, subject: str, now: float) -> Hold | None: ...

    def observe_prompt(self, subject: str, tenant: str, prompt: str, now: float) -> None: ...

    def observe_outcome(self, subject: str, tenant: str, action: str, labels: list[str], now: float) -> None: ...

    def observe_refused(self, subject: str, tenant: str, now: float) -> None: ...

    def lift(self, subject: str) -> Restriction | None: ...


@dataclass
class _Subject:
    events: deque[tuple[float, str]] = field(default_factory=deque)  # (time, kind): request, blocked, ...
    prompts: deque[tuple[float, str, str]] = field(default_factory=deque)  # (time, prefix hash, tail hash)
    throttles: deque[float] = field(default_factory=deque)


def _h(text: str) -> str:
    """`surrogatepass`: a prompt may hold a lone surrogate (from a response, or a route that does not
    refuse them); it is hashed as what it is, rather than failing the request with a 500."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def prompt_hashes(prompt: str, cut: int) -> tuple[str, str] | None:
    """A prompt as systematic querying sees it (template prefix, tail); hashed where it is read, so the
    supervisor's monitor is sent 32 bytes rather than the prompt."""
    return (_h(prompt[:cut]), _h(prompt[cut:])) if len(prompt) > cut else None


class AbuseMonitor:
    def __init__(self, settings: AbuseSettings, on_change: Callable[[str, Restriction], None]) -> None:
        """`on_change(action, restriction)` hears "throttle", "suspend", "expire" and "lift" (audit, metrics)."""
        self.settings = settings
        self.on_change = on_change
        self._subjects: OrderedDict[str, _Subject] = OrderedDict()
        self.restrictions: dict[str, Restriction] = {}
        self._throttle_buckets: dict[str, TokenBucket] = {}  # a throttled subject's throttle_rpm

    def _subject(self, name: str, now: float) -> _Subject:
        subject = self._subjects.get(name)
        if subject is None:
            subject = self._subjects[name] = _Subject()
            if len(self._subjects) > MAX_SUBJECTS:
                self._subjects.popitem(last=False)
        else:
            self._subjects.move_to_end(name)
        horizon = now - self.settings.window_s
        while subject.events and subject.events[0][0] < horizon:
            subject.events.popleft()
        while subject.prompts and subject.prompts[0][0] < horizon:
            subject.prompts.popleft()
        return subject

    def restriction(self, subject: str, now: float) -> Restriction | None:
        found = self.restrictions.get(subject)
        if found is not None and found.until <= now:
            del self.restrictions[subject]
            self.on_change("expire", found)
            return None
        return found

    def hold(self, subject: str, now: float) -> Hold | None:
        """Whether `subject`'s request is refused now; a throttled subject's allowed requests are taken here."""
        restriction = self.restriction(subject, now)
        if restriction is None:
            self._throttle_buckets.pop(subject, None)
            return None
        if restriction.kind == "suspend":
            return Hold(restriction, restriction.until - now)
        bucket = self._throttle_buckets.setdefault(subject, TokenBucket(float(self.settings.throttle_rpm)))
        wait = bucket.wait_s(1, now)
        if wait > 0:
            return Hold(restriction, wait)
        bucket.take(1, now)
        return None

    async def check(self, subject: str, now: float) -> Hold | None:
        return self.hold(subject, now)

    def lift(self, subject: str) -> Restriction | None:
        found = self.restrictions.pop(subject, None)
        if found is not None:
            self.on_change("lift", found)
        return found

    def observe_prompt(self, subject: str, tenant: str, prompt: str, now: float) -> None:
        if self.settings.enabled:
            self.observe_hashes(subject, tenant, prompt_hashes(prompt, self.settings.template_prefix_chars), now)

    def observe_hashes(self, subject: str, tenant: str, hashes: tuple[str, str] | None, now: float) -> None:
        if not self.settings.enabled:
            return
        s = self._subject(subject, now)
        if hashes is not None:
            s.prompts.append((now, *hashes))
        s.events.append((now, "request"))
        self._judge(subject, tenant, s, now)

    def observe_outcome(self, subject: str, tenant: str, action: str, labels: list[str], now: float) -> None:
        if not self.settings.enabled:
            return
        s = self._subject(subject, now)
        if action == "block":
            s.events.append((now, "blocked"))
        lowered = [label.lower() for label in labels]
        if any(fnmatch.fnmatchcase(label, p.lower()) for label in lowered for p in self.settings.jailbreak_labels):
            s.events.append((now, "jailbreak"))
        self._judge(subject, tenant, s, now)

    def observe_refused(self, subject: str, tenant: str, now: float) -> None:
        if not self.settings.enabled:
            return
        s = self._subject(subject, now)
        s.events.append((now, "rate_limited"))
        self._judge(subject, tenant, s, now)

    def signals(self, subject: str, now: float) -> dict[str, float]:
        s = self._subject(subject, now)
        counts = Counter(kind for _, kind in s.events)
        requests = counts["request"]
        tails: dict[str, set[str]] = {}
        for _, prefix, tail in s.prompts:
            tails.setdefault(prefix, set()).add(tail)
        return {
            "requests": requests,
            "block_rate": counts["blocked"] / requests if requests else 0.0,
            "jailbreaks": counts["jailbreak"],
            "rate_limited": counts["rate_limited"],
            "systematic": max((len(t) for t in tails.values()), default=0),
        }

    def _judge(self, subject: str, tenant: str, s: _Subject, now: float) -> None:
        current = self.restriction(subject, now)
        if current is not None and current.kind == "suspend":
            return
        reason = self._reason(self.signals(subject, now))
        if reason is None or current is not None:
            return
        while s.throttles and s.throttles[0] < now - DAY_S:
            s.throttles.popleft()
        s.throttles.append(now)
        cfg = self.settings
        if len(s.throttles) >= cfg.suspend_after:
            restriction = Restriction(subject, tenant, "suspend", reason, now + cfg.suspend_s)
        else:
            restriction = Restriction(subject, tenant, "throttle", reason, now + cfg.throttle_s)
        s.events.clear()  # a fresh window after the penalty: the same burst is not punished twice
        s.prompts.clear()
        self.restrictions[subject] = restriction
        self.on_change(restriction.kind, restriction)

    def _reason(self, signals: dict[str, float]) -> str | None:
        cfg = self.settings
        if signals["jailbreaks"] >= cfg.max_jailbreaks:
            return f"{int(signals['jailbreaks'])} jailbreak or injection attempts in {cfg.window_s:g}s"
        if signals["rate_limited"] >= cfg.max_rate_limited:
            return f"flood: {int(signals['rate_limited'])} rate-limited requests in {cfg.window_s:g}s"
        if signals["systematic"] >= cfg.max_systematic:
            return f"systematic querying: {int(signals['systematic'])} variations of one prompt template"
        if signals["requests"] >= cfg.min_requests and signals["block_rate"] > cfg.max_block_rate:
            return f"block rate {signals['block_rate']:.0%} over {int(signals['requests'])} requests"
        return None
