"""Policy on non-streamed answers: buffer (bounded), scan every text slot, rewrite, send.

Every string of a JSON answer that is not protocol is scanned (proxy/wire/texts.py), whatever the
API and whatever the status: an upstream error body can echo the prompt. A body that is not JSON
is scanned as one text. An answer over the size limit is refused (`oversize: block`, the default)
or passed unscanned and counted (`oversize: pass`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from detectors.base import Finding
from detectors.redact import Redactor
from proxy.errors import error_body
from proxy.policy.engine import Action, Verdict
from proxy.policy.hooks import Recorder
from proxy.wire.texts import ANSWER_CONTROL, Slot, text_slots

ScanMany = Callable[[list[str]], Awaitable[Verdict]]


def mark_blocked(payload: dict[str, Any]) -> None:
    """Say in the answer's own terms that policy withheld it (chat/completions, Responses, Messages)."""
    for choice in payload.get("choices") or []:
        if isinstance(choice, dict):
            choice["finish_reason"] = "content_filter"
    if payload.get("object") == "response":
        payload["status"] = "incomplete"
        payload["incomplete_details"] = {"reason": "content_filter"}
    if payload.get("type") == "message":
        payload["stop_reason"] = "refusal"


def drop_token_scores(payload: dict[str, Any]) -> None:
    """Log-probabilities spell out the original tokens: they go when the text they score was changed."""
    for choice in payload.get("choices") or []:
        if isinstance(choice, dict) and choice.get("logprobs") is not None:
            choice["logprobs"] = None
    for item in payload.get("output") or []:
        for part in (item.get("content") or []) if isinstance(item, dict) else []:
            if isinstance(part, dict) and part.get("logprobs"):
                part["logprobs"] = []


class JsonEnforcer:
    """Buffers the answer, scans it whole at the end; `replaced` tells the relay to answer with a new status."""

    def __init__(self, scan: ScanMany, recorder: Recorder, redactor: Redactor, limit: int,
                 on_unscanned: Callable[[str], None], *, oversize: str = "block", plain: bool = False) -> None:
        self.scan = scan
        self.recorder = recorder
        self.redactor = redactor
        self.limit = limit
        self.on_unscanned = on_unscanned
        self.oversize = oversize
        self.plain = plain  # a text body (not JSON): scanned as one text
        self.stopped = False
        self.replaced: tuple[int, str] | None = None  # (status, content type) of a body Warden wrote instead
        self._parts: list[bytes] = []
        self._size = 0
        self._passing = False  # over the limit with `oversize: pass`: what is left goes through unscanned

    async def feed(self, chunk: bytes) -> bytes:
        if self._passing:
            return chunk
        self._parts.append(chunk)
        self._size += len(chunk)
        if self._size > self.limit:
            self.on_unscanned("too_large")
            if self.oversize == "pass":
                self._passing = True
                return self._take()
            self._parts = []
            self.stopped = True
            return self._refuse(f"the upstream answer is over policy.max_response_bytes ({self.limit} bytes) "
                                "and cannot be scanned", "response_too_large")
        return b""

    def _refuse(self, message: str, code: str) -> bytes:
        self.replaced = (502, "application/json")
        return json.dumps(error_body(message, "server_error", code, None)).encode()

    def _take(self) -> bytes:
        body, self._parts = b"".join(self._parts), []
        return body

    async def finish(self) -> bytes:
        body = self._take()
        if self._passing or not body:
            return body
        if self.plain:
            return await self._finish_text(body)
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):  # not JSON after all: scanned as the text it is
            return await self._finish_text(body)
        slots = [s for s in text_slots(payload, ANSWER_CONTROL) if s.get()] if isinstance(payload, (dict, list)) \
            else []
        if not slots:
            return body
        action = await self._apply(slots)
        if action < Action.REDACT:
            return body
        if isinstance(payload, dict):
            if action == Action.BLOCK:
                mark_blocked(payload)
            drop_token_scores(payload)
        return json.dumps(payload, ensure_ascii=False).encode()

    async def _finish_text(self, body: bytes) -> bytes:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            self.on_unscanned("not_text")
            return self._refuse("the upstream answered with a body that is neither JSON nor text, on a scanned "
                                "route", "unscannable_response")
        holder = {"text": text}
        action = await self._apply([Slot(holder, "text")])
        return body if action < Action.REDACT else holder["text"].encode()

    async def _apply(self, slots: list[Slot]) -> Action:
        verdict = await self.scan([slot.get() for slot in slots])
        self.recorder(verdict)
        if verdict.action == Action.BLOCK:
            for slot in slots:
                slot.set("")
        elif verdict.action == Action.REDACT:
            for index, slot in enumerate(slots):
                spans: list[Finding] = verdict.redactions(index)
                if spans:
                    slot.set(self.redactor.redact(slot.get(), spans))
        return verdict.action
