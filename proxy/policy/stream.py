"""Enforcing policy on an SSE stream without leaking, and without holding text longer than needed.

Streamed text is not forwarded as it comes. Each channel's text (a choice's content, one tool
call's arguments, a Responses output part, a Messages content block: proxy/wire/streams.py says
which) accumulates in `held`. It is released as soon as no finding can still include it: every
detector declares how much of the tail its findings could still grow from (detectors/holdback.py:
an unfinished token, a run of capitalised words or digit groups), the enforcer holds the largest
such tail, never more than the window, and a detector that declares nothing is held the whole
window (the conservative rule this enforcer had before detectors could say). The rest is scanned
and released, redacted; a finding that straddles the cut pulls the cut back to its start.

Scanning is incremental: each scan reads what is held (new text plus the short held tail) after a
bounded left context of text already released (`left_context`: the current sentence's last
`CONTEXT_WORDS` words, at most `CONTEXT_CHARS` characters: presidio's context words look five
words back and spaCy's NER reads about four tokens either side), so each character is scanned
about once, not once per overlapping window. The context is the original text, as a scan of the
whole answer would read it. Findings inside the context were dealt with when it was released.

Small releases cost a scan each, so after the first release (which goes out as soon as it can) a
channel is scanned when `MIN_SCAN_CHARS` are releasable or releasable text has waited
`SCAN_WAIT_S` (it is checked as chunks arrive: the relay pulls). When the scanner falls behind, a stream simply holds
more (the relay reads no more of the upstream while a scan is pending) and the next scan reads
more at once; a stream whose oldest held character has waited `max_hold_s` gets the detectors'
`on_error`: closed ends it blocked, open releases the held text unscanned (counted).

Events that stream no text (usage, `.done` events, message starts, errors) are scanned whole,
after every channel has been released. A block ends the stream with the API's own ending (a
`content_filter` chunk and `[DONE]`, or an error event); the relay then stops reading the upstream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from detectors.base import Finding
from detectors.normalize import normalize
from detectors.redact import Redactor
from proxy.errors import sse_error_event
from proxy.policy.engine import UNAVAILABLE, Action, Decision, Verdict
from proxy.policy.hooks import Recorder, Scan
from proxy.policy.metrics import StreamGauges
from proxy.wire.sse import EventTooLarge, SSEDecoder, SSEEvent
from proxy.wire.streams import Channel, ChatCodec, Codec
from proxy.wire.texts import ANSWER_CONTROL, text_slots

ScanMany = Callable[[list[str]], Awaitable[Verdict]]
Holdback = Callable[[str], int]  # a normalised text -> how many trailing characters must stay held

CONTEXT_WORDS = 5
CONTEXT_CHARS = 48
MIN_SCAN_CHARS = 32
SCAN_WAIT_S = 0.08
KEEP_CHARS = 1 << 18  # a channel's released text kept for the closing events that repeat it
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s+|\n\s*\n")
_WORD_START = re.compile(r"(?<!\S)\S")


def left_context(released: str) -> str:
    """What a scan reads before the held text: the last words of the current sentence, never less
    than the last character (a pattern's lookbehind at the cut sees what a whole scan would)."""
    tail = released[-CONTEXT_CHARS:]
    cut_word = len(released) > CONTEXT_CHARS and not released[-CONTEXT_CHARS - 1].isspace()
    ends = list(_SENTENCE_END.finditer(tail))
    if ends:
        tail, cut_word = tail[ends[-1].end():], False
    starts = [m.start() for m in _WORD_START.finditer(tail)]
    if cut_word and starts and starts[0] == 0:
        starts = starts[1:]  # the first word was cut by the character bound: start at the next one
    if starts:
        tail = tail[starts[max(0, len(starts) - CONTEXT_WORDS)]:]
    elif cut_word:
        tail = ""
    return tail or released[-1:]


@dataclass
class _Channel:
    held: str = ""
    context: str = ""  # original text released just before `held`: the scans' left context
    seen: set[tuple[str, str, int]] = field(default_factory=set)  # findings already recorded
    offset: int = 0  # absolute position of `held` in the whole output
    original: list[str] = field(default_factory=list)  # what was released, as the upstream sent it
    redacted: list[str] = field(default_factory=list)  # and as the client got it
    arrivals: deque[tuple[int, float]] = field(default_factory=deque)  # (end offset, when) of held pieces
    releasable_since: float | None = None  # when text last became releasable with none released since

    def add(self, text: str, now: float) -> None:
        self.held += text
        self.arrivals.append((self.offset + len(self.held), now))

    def since(self) -> float | None:
        """When the oldest held character arrived."""
        return self.arrivals[0][1] if self.arrivals else None

    def released(self, count: int) -> None:
        self.releasable_since = None
        self.context = left_context(self.context + self.held[:count])
        self.held = self.held[count:]
        self.offset += count
        while self.arrivals and self.arrivals[0][0] <= self.offset:
            self.arrivals.popleft()


def _closed(channel: Channel, closes: list[Channel] | None) -> bool:
    """Whether an event ends this channel: it names the channel or one above it (a choice ends its tool calls)."""
    return closes is not None and any(channel[:len(prefix)] == prefix for prefix in closes)


class StreamEnforcer:
    """A relay transform for `text/event-stream` answers of every scanned API (the codec knows the API).

    `holdback` (a normalised text -> trailing characters to hold) comes from the detectors; without
    it every channel holds its whole window. `fail_closed` is the strictest `on_error` among the
    response detectors, applied when a stream has held text for `max_hold_s`.
    """

    def __init__(self, scan: Scan, recorder: Recorder, window: int, redactor: Redactor,
                 max_event_bytes: int | None = None, *, codec: Codec | None = None,
                 scan_many: ScanMany | None = None, holdback: Holdback | None = None,
                 max_hold_s: float | None = None, fail_closed: bool = False,
                 gauges: StreamGauges | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.scan = scan
        self.scan_many = scan_many
        self.recorder = recorder
        self.window = window
        self.redactor = redactor
        self.codec = codec if codec is not None else ChatCodec()
        self.holdback = holdback
        self.max_hold_s = max_hold_s
        self.fail_closed = fail_closed
        self.gauges = gauges
        self.clock = clock
        self.stopped = False
        self.scans = 0
        self.largest_lag = 0.0  # the longest any character waited in `held`, for the scan-lag histogram
        self._decoder = SSEDecoder(max_event_bytes)
        self._channels: dict[Channel, _Channel] = {}
        self._touched: dict[Channel, None] = {}
        self._observed = False  # channels with new text since the last release pass

    async def feed(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        try:
            events = self._decoder.events(chunk)
        except EventTooLarge as exc:
            self._stop()  # nothing unscanned goes out: the stream ends with an error the client can read
            return sse_error_event(f"upstream answer not relayed: {exc}", "response_too_large")
        for event in events:
            if self.stopped:
                break
            out.append(await self._event(event))
        # Text is released once per upstream read, not per event: a read that brings many events
        # (the scanner was slow, the relay read nothing meanwhile) costs one scan per channel.
        if not self.stopped:
            out.append(await self._release_touched())
        return b"".join(out)

    async def finish(self) -> bytes:
        if self.stopped:
            self._done()
            return b""
        flushed = await self._flush(list(self._channels))
        if self.stopped:
            return flushed
        tail = self._decoder.close()  # an unterminated last event: scanned like any other, never passed raw
        for event in tail:
            if self.stopped:
                break
            flushed += await self._event(event)
        if tail and not self.stopped:
            flushed += await self._flush(list(self._channels))
        self._done()
        return flushed

    def _stop(self) -> None:
        self.stopped = True
        self._done()

    def _done(self) -> None:
        """The stream's largest scan lag, observed once (the relay calls no `finish` after a block)."""
        if self.gauges is not None and not self._observed:
            self._observed = True
            self.gauges.stream_done(self.largest_lag)

    async def _event(self, event: SSEEvent) -> bytes:
        if event.data.strip() == "[DONE]":
            return await self._flush(list(self._channels)) + (b"" if self.stopped else b"data: [DONE]\n\n")
        try:
            parsed = json.loads(event.data)
        except (ValueError, RecursionError):
            parsed = None
        if not isinstance(parsed, dict):  # not an object: its data is scanned as plain text
            flushed = await self._flush(list(self._channels))
            holder = {"data": event.data}
            return flushed + await self._whole(holder, lambda: SSEEvent(holder["data"], event.event, event.id).encode())
        split = self.codec.split(event.event, parsed)
        now = self.clock()
        for channel, text in split.pieces:
            self._channels.setdefault(channel, _Channel()).add(text, now)
            self._touched[channel] = None
        to_close = [c for c in self._channels if split.whole or _closed(c, split.closes)]
        out = [await self._flush(to_close)]
        if self.stopped or split.rest is None:
            return b"".join(out)
        rest = split.rest
        if split.whole:
            return b"".join(out) + await self._whole(rest, lambda: self.codec.encode(event.event, rest))
        return b"".join(out) + self.codec.encode(event.event, rest)

    async def _whole(self, document: dict[str, Any], encode: Callable[[], bytes]) -> bytes:
        """An event with no streamed pieces: its text scanned as one document, redacted in place.

        A text that repeats a finished channel's text (`response.output_text.done`, the output of
        `response.completed`) gets that channel's redacted text without a scan: it was scanned as
        it streamed, and three more whole scans of every answer cost more than the stream itself.
        """
        slots = text_slots(document, ANSWER_CONTROL)
        finished = self._finished()
        reused = set()
        for index, slot in enumerate(slots):
            if slot.get() in finished:
                slot.set(finished[slot.get()])
                reused.add(index)
        live = [slot for index, slot in enumerate(slots) if slot.get() and index not in reused]
        texts = [slot.get() for slot in live]
        if not texts:
            return encode()
        verdict = await (self.scan_many(texts) if self.scan_many else self._scan_each(texts))
        self.recorder(verdict)
        if verdict.action == Action.BLOCK:
            self._stop()
            return self.codec.blocked(None)
        for index, slot in enumerate(live):
            spans: list[Finding] = verdict.redactions(index)
            if spans:
                slot.set(self.redactor.redact(slot.get(), spans))
        return encode()

    def _finished(self) -> dict[str, str]:
        """Each channel released in full (nothing held): its text as sent -> as released."""
        return {"".join(c.original): "".join(c.redacted) for c in self._channels.values()
                if c.original and not c.held}

    async def _scan_each(self, texts: list[str]) -> Verdict:
        decisions = []
        action = Action.ALLOW
        for index, text in enumerate(texts):
            verdict = await self.scan(text)
            action = max(action, verdict.action)
            decisions += [dataclasses.replace(d, text_index=index) for d in verdict.decisions]
        return Verdict(action, decisions)

    async def _release_touched(self) -> bytes:
        touched, self._touched = list(self._touched), {}
        return await self._flush(touched, final=False)

    async def _flush(self, channels: list[Channel], *, final: bool = True) -> bytes:
        out: list[bytes] = []
        for channel in channels:
            state = self._channels.get(channel)
            if state is None:
                continue
            released = await self._release(state, final=final)
            if self.stopped:
                return b"".join(out) + self.codec.blocked(channel)
            if released:
                out.append(self.codec.rebuild(channel, released))
        return b"".join(out)

    def _hold(self, state: _Channel) -> int:
        """How many held characters must stay held: what the detectors may still extend, at most the window."""
        if self.holdback is None:
            return min(self.window, len(state.held))
        text = state.context + state.held
        view = normalize(text)
        wanted = self.holdback(view.text)
        if wanted <= 0:
            return 0
        raw = len(text) - (view.start(len(view.text) - wanted) if wanted < len(view.text) else 0)
        return min(self.window, len(state.held), raw)

    def _due(self, state: _Channel, releasable: int) -> bool:
        """Whether a scan is worth it now: the first release goes at once, later ones in batches of
        at least `MIN_SCAN_CHARS`, or once releasable text has waited `SCAN_WAIT_S`."""
        now = self.clock()
        if state.releasable_since is None:
            state.releasable_since = now
        return state.offset == 0 or releasable >= MIN_SCAN_CHARS or now - state.releasable_since >= SCAN_WAIT_S

    async def _release(self, state: _Channel, *, final: bool) -> str:
        if not state.held:
            return ""
        hold = 0 if final else self._hold(state)
        if len(state.held) - hold <= 0 or (not final and not self._due(state, len(state.held) - hold)):
            return ""
        text = state.context + state.held
        verdict = await self._scan_held(state, text)
        if verdict is None:
            return self._unscanned(state, hold)
        self._record(state, verdict, len(state.context))
        if verdict.action == Action.BLOCK:
            self._stop()
            return ""
        cut = len(state.held) - hold
        base = len(state.context)
        spans = [Finding(f.detector, f.label, f.score, (f.start or 0) - base, (f.end or 0) - base)
                 for f in verdict.redactions(0) if (f.end or 0) > base]
        for span in spans:
            if span.start is not None and span.end is not None and span.start < cut < span.end:
                cut = max(0, min(cut, span.start))
        if cut <= 0:
            return ""
        kept = [dataclasses.replace(s, start=max(0, s.start or 0), end=min(cut, s.end or 0))
                for s in spans if (s.start or 0) < cut]
        released = self.redactor.redact(state.held[:cut], kept)
        self._lag(state)
        if state.offset + cut <= KEEP_CHARS:
            state.original.append(state.held[:cut])
            state.redacted.append(released)
        else:  # a very long channel: its closing events are scanned again rather than kept in memory
            state.original, state.redacted = [], []
        state.released(cut)
        return released

    async def _scan_held(self, state: _Channel, text: str) -> Verdict | None:
        """The scan of what is held (after its left context); None when the longest hold ran out first."""
        self.scans += 1
        since = state.since()
        budget = None if self.max_hold_s is None or since is None else self.max_hold_s - (self.clock() - since)
        if self.gauges is not None:
            self.gauges.waiting += 1
        try:
            async with asyncio.timeout(None if budget is None else max(0.0, budget)):
                return await self.scan(text)
        except TimeoutError:
            return None
        finally:
            if self.gauges is not None:
                self.gauges.waiting -= 1

    def _unscanned(self, state: _Channel, hold: int) -> str:
        """The scanner kept this stream waiting past `max_hold_s`: the detectors' `on_error` applies."""
        reason = f"the stream held text for {self.max_hold_s:g}s waiting on its scan"
        if self.gauges is not None:
            self.gauges.held_too_long(self.fail_closed)
        if self.fail_closed:
            self.recorder(_unavailable(reason))
            self._stop()
            return ""
        cut = len(state.held) - hold
        released = state.held[:cut]
        self._lag(state)
        state.released(cut)
        return released

    def _lag(self, state: _Channel) -> None:
        since = state.since()
        if since is not None:
            self.largest_lag = max(self.largest_lag, self.clock() - since)

    def _record(self, state: _Channel, verdict: Verdict, base: int) -> None:
        """Each finding once per stream, although a held tail is scanned again with the next text."""
        fresh = []
        for decision in verdict.decisions:
            f = decision.finding
            if f.has_span and (f.end or 0) <= base:
                continue  # in the context: recorded when that text was released
            where = state.offset + (f.start or 0) - base if f.has_span else -1
            key = (f.detector, f.label, where)
            if key not in state.seen:
                state.seen.add(key)
                fresh.append(decision)
        if fresh or verdict.action == Action.BLOCK:
            self.recorder(Verdict(verdict.action, fresh))


def _unavailable(reason: str) -> Verdict:
    finding = Finding("stream", UNAVAILABLE, 1.0, explanation=reason)
    return Verdict(Action.BLOCK, [Decision(finding, Action.BLOCK, 0)])
