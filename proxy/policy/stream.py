"""Enforcing policy on an SSE stream without leaking: a hold-back window per channel.

Streamed text is not forwarded as it comes. Each channel's text (a choice's content, one tool
call's arguments, a Responses output part, a Messages content block: proxy/wire/streams.py says
which) accumulates in a buffer; once the buffer is a window plus a step long, it is scanned (with
a little already-released text before it as context) and everything but the last `window`
characters is released, redacted. So every released character has been scanned with at least
`window` characters of text after it: an entity shorter than the window that starts in the
released part is complete in the scan, wherever the chunk boundaries fell. A finding that
straddles the cut pulls the cut back to its start. Events that stream no text (usage, `.done`
events, message starts, errors) are scanned whole, after every channel has been released. A
block ends the stream with the API's own ending (a `content_filter` chunk and `[DONE]`, or an
error event); the relay then stops reading the upstream.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from detectors.base import Finding
from detectors.redact import Redactor
from proxy.errors import sse_error_event
from proxy.policy.engine import Action, Verdict
from proxy.policy.hooks import Recorder, Scan
from proxy.wire.sse import EventTooLarge, SSEDecoder, SSEEvent
from proxy.wire.streams import Channel, ChatCodec, Codec
from proxy.wire.texts import ANSWER_CONTROL, text_slots

ScanMany = Callable[[list[str]], Awaitable[Verdict]]

CONTEXT_CHARS = 64
FIRST_STEP = 8


@dataclass
class _Channel:
    held: str = ""
    context: str = ""
    seen: set[tuple[str, str, int]] = field(default_factory=set)  # findings already recorded
    offset: int = 0  # absolute position of `held` in the whole output


def _closed(channel: Channel, closes: list[Channel] | None) -> bool:
    """Whether an event ends this channel: it names the channel or one above it (a choice ends its tool calls)."""
    return closes is not None and any(channel[:len(prefix)] == prefix for prefix in closes)


class StreamEnforcer:
    """A relay transform for `text/event-stream` answers of every scanned API (the codec knows the API)."""

    def __init__(self, scan: Scan, recorder: Recorder, window: int, redactor: Redactor,
                 max_event_bytes: int | None = None, *, codec: Codec | None = None,
                 scan_many: ScanMany | None = None) -> None:
        self.scan = scan
        self.scan_many = scan_many
        self.recorder = recorder
        self.window = window
        self.step = max(8, window // 2)
        self.redactor = redactor
        self.codec = codec if codec is not None else ChatCodec()
        self.stopped = False
        self._decoder = SSEDecoder(max_event_bytes)
        self._channels: dict[Channel, _Channel] = {}

    async def feed(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        try:
            events = self._decoder.events(chunk)
        except EventTooLarge as exc:
            self.stopped = True  # nothing unscanned goes out: the stream ends with an error the client can read
            return sse_error_event(f"upstream answer not relayed: {exc}", "response_too_large")
        for event in events:
            if self.stopped:
                break
            out.append(await self._event(event))
        return b"".join(out)

    async def finish(self) -> bytes:
        if self.stopped:
            return b""
        flushed = await self._flush(list(self._channels))
        if self.stopped:
            return flushed
        tail = self._decoder.rest()
        if tail.strip():  # an unterminated last event: its text is scanned like any other, never passed raw
            return flushed + await self._event(SSEEvent(tail.decode("utf-8", "replace").removeprefix("data:")))
        return flushed

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
        out: list[bytes] = []
        for channel, text in split.pieces:
            state = self._channels.setdefault(channel, _Channel())
            state.held += text
            released = await self._release(state, final=_closed(channel, split.closes))
            if self.stopped:
                return b"".join(out) + self.codec.blocked(channel)
            if released:
                out.append(self.codec.rebuild(channel, released))
        to_close = [c for c in self._channels if split.whole or _closed(c, split.closes)]
        out.append(await self._flush(to_close))
        if self.stopped or split.rest is None:
            return b"".join(out)
        rest = split.rest
        if split.whole:
            return b"".join(out) + await self._whole(rest, lambda: self.codec.encode(event.event, rest))
        return b"".join(out) + self.codec.encode(event.event, rest)

    async def _whole(self, document: dict[str, Any], encode: Callable[[], bytes]) -> bytes:
        """An event with no streamed pieces: its text scanned as one document, redacted in place."""
        slots = text_slots(document, ANSWER_CONTROL)
        texts = [slot.get() for slot in slots if slot.get()]
        if not texts:
            return encode()
        live = [slot for slot in slots if slot.get()]
        verdict = await (self.scan_many(texts) if self.scan_many else self._scan_each(texts))
        self.recorder(verdict)
        if verdict.action == Action.BLOCK:
            self.stopped = True
            return self.codec.blocked(None)
        for index, slot in enumerate(live):
            spans: list[Finding] = verdict.redactions(index)
            if spans:
                slot.set(self.redactor.redact(slot.get(), spans))
        return encode()

    async def _scan_each(self, texts: list[str]) -> Verdict:
        decisions = []
        action = Action.ALLOW
        for index, text in enumerate(texts):
            verdict = await self.scan(text)
            action = max(action, verdict.action)
            decisions += [dataclasses.replace(d, text_index=index) for d in verdict.decisions]
        return Verdict(action, decisions)

    async def _flush(self, channels: list[Channel]) -> bytes:
        out: list[bytes] = []
        for channel in channels:
            state = self._channels.get(channel)
            if state is None:
                continue
            released = await self._release(state, final=True)
            if self.stopped:
                return b"".join(out) + self.codec.blocked(channel)
            if released:
                out.append(self.codec.rebuild(channel, released))
        return b"".join(out)

    async def _release(self, state: _Channel, *, final: bool) -> str:
        # The first release comes as soon as a few characters are past the window, later ones in
        # half-window steps (fewer scans): the first token waits for the window, not more.
        step = FIRST_STEP if state.offset == 0 else self.step
        if not state.held or (not final and len(state.held) < self.window + step):
            return ""
        text = state.context + state.held
        verdict = await self.scan(text)
        self._record(state, verdict, len(state.context))
        if verdict.action == Action.BLOCK:
            self.stopped = True
            return ""
        cut = len(state.held) if final else len(state.held) - self.window
        base = len(state.context)
        spans = [Finding(f.detector, f.label, f.score, (f.start or 0) - base, (f.end or 0) - base)
                 for f in verdict.redactions(0)]
        for span in spans:
            if span.start is not None and span.end is not None and span.start < cut < span.end:
                cut = max(0, min(cut, span.start))
        released = self.redactor.redact(state.held[:cut], [s for s in spans if (s.start or 0) < cut])
        state.held = state.held[cut:]
        state.offset += cut
        state.context = (state.context + released)[-CONTEXT_CHARS:]
        return released

    def _record(self, state: _Channel, verdict: Verdict, base: int) -> None:
        """Each finding once per stream, although overlapping windows see it several times."""
        fresh = []
        for decision in verdict.decisions:
            f = decision.finding
            where = state.offset + (f.start or 0) - base if f.has_span else -1
            key = (f.detector, f.label, where)
            if key not in state.seen:
                state.seen.add(key)
                fresh.append(decision)
        if fresh or verdict.action == Action.BLOCK:
            self.recorder(Verdict(verdict.action, fresh))
