"""Enforcing policy on an SSE stream without leaking: a hold-back window per choice.

Content deltas are not forwarded as they come. Each choice's text accumulates in a buffer;
once the buffer is a window plus a step long, it is scanned (with a little already-released
text before it as context) and everything but the last `window` characters is released,
redacted. So every released character has been scanned with at least `window` characters of
text after it: an entity shorter than the window that starts in the released part is complete
in the scan, wherever the chunk boundaries fell. A finding that straddles the cut pulls the cut
back to its start. A block ends the stream with a `content_filter` chunk and `[DONE]`; the
relay then stops reading the upstream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from detectors.base import Finding
from detectors.redact import Redactor
from proxy.errors import sse_error_event
from proxy.policy.engine import Action, Verdict
from proxy.policy.hooks import Recorder, Scan
from proxy.wire.sse import EventTooLarge, SSEDecoder, choice_index, sse

CONTEXT_CHARS = 64
FIRST_STEP = 8


@dataclass
class _Choice:
    held: str = ""
    context: str = ""
    seen: set[tuple[str, str, int]] = field(default_factory=set)  # findings already recorded
    offset: int = 0  # absolute position of `held` in the whole output


class StreamEnforcer:
    """A relay transform for `text/event-stream` responses of chat and completion routes."""

    def __init__(self, scan: Scan, recorder: Recorder, window: int, redactor: Redactor,
                 max_event_bytes: int | None = None) -> None:
        self.scan = scan
        self.recorder = recorder
        self.window = window
        self.step = max(8, window // 2)
        self.redactor = redactor
        self.stopped = False
        self._decoder = SSEDecoder(max_event_bytes)
        self._choices: dict[int, _Choice] = {}
        self._envelope: dict[str, Any] = {}
        self._legacy = False  # completions stream `text`, chat streams `delta.content`

    async def feed(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        try:
            events = self._decoder.feed(chunk)
        except EventTooLarge as exc:
            self.stopped = True  # nothing unscanned goes out: the stream ends with an error the client can read
            return sse_error_event(f"upstream answer not relayed: {exc}", "response_too_large")
        for data in events:
            if self.stopped:
                break
            out.append(await self._event(data))
        return b"".join(out)

    async def finish(self) -> bytes:
        if self.stopped:
            return b""
        tail = self._decoder.rest()
        flushed = await self._flush_all()
        return flushed + tail

    async def _event(self, data: str) -> bytes:
        if data.strip() == "[DONE]":
            return await self._flush_all() + (b"" if self.stopped else b"data: [DONE]\n\n")
        try:
            event = json.loads(data)
        except (ValueError, RecursionError):
            return f"data: {data}\n\n".encode()
        choices = event.get("choices") if isinstance(event, dict) else None
        if isinstance(choices, list):  # a backend's malformed choices are dropped: they cannot be scanned
            choices = event["choices"] = [c for c in choices if isinstance(c, dict)]
        if not isinstance(choices, list) or not choices:
            return await self._flush_all() + (b"" if self.stopped else sse(event))  # usage, errors
        self._envelope = {k: v for k, v in event.items() if k != "choices"}
        out: list[bytes] = []
        passthrough = []
        for choice in choices:
            index = choice_index(choice)
            state = self._choices.setdefault(index, _Choice())
            text = self._take_text(choice)
            state.held += text
            finishing = choice.get("finish_reason") is not None
            released = await self._release(index, state, final=finishing)
            if self.stopped:
                return b"".join(out) + self._blocked(index)
            if released:
                out.append(self._chunk(index, released))
            if finishing or not text:
                passthrough.append(choice)  # role announcements, tool calls, finish reasons
        if passthrough:
            out.append(sse({**self._envelope, "choices": passthrough}))
        return b"".join(out)

    def _take_text(self, choice: dict[str, Any]) -> str:
        delta = choice.get("delta")
        if isinstance(delta, dict) and isinstance(delta.get("content"), str):
            text: str = delta.pop("content")
            return text
        if isinstance(choice.get("text"), str):
            self._legacy = True
            text = choice.pop("text")
            return text
        return ""

    def _chunk(self, index: int, text: str) -> bytes:
        body = {"index": index, "text": text} if self._legacy else {"index": index, "delta": {"content": text}}
        return sse({**self._envelope, "choices": [{**body, "finish_reason": None}]})

    def _blocked(self, index: int) -> bytes:
        ending = {"index": index, "finish_reason": "content_filter"}
        if not self._legacy:
            ending["delta"] = {}
        return sse({**self._envelope, "choices": [ending]}) + b"data: [DONE]\n\n"

    async def _flush_all(self) -> bytes:
        out: list[bytes] = []
        for index, state in self._choices.items():
            released = await self._release(index, state, final=True)
            if self.stopped:
                return b"".join(out) + self._blocked(index)
            if released:
                out.append(self._chunk(index, released))
        return b"".join(out)

    async def _release(self, index: int, state: _Choice, *, final: bool) -> str:
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

    def _record(self, state: _Choice, verdict: Verdict, base: int) -> None:
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
