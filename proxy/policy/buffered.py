"""Policy on non-streamed JSON answers: buffer (bounded), scan every choice, rewrite, send."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from detectors.base import Finding
from detectors.redact import Redactor
from proxy.policy.engine import Action, Verdict
from proxy.policy.hooks import Recorder
from proxy.wire.texts import response_slots

ScanMany = Callable[[list[str]], Awaitable[Verdict]]


class JsonEnforcer:
    def __init__(self, scan: ScanMany, recorder: Recorder, redactor: Redactor, limit: int,
                 on_unscanned: Callable[[str], None]) -> None:
        self.scan = scan
        self.recorder = recorder
        self.redactor = redactor
        self.limit = limit
        self.on_unscanned = on_unscanned
        self.stopped = False
        self._parts: list[bytes] = []
        self._size = 0
        self._passing = False  # over the limit: what is left goes through unscanned

    async def feed(self, chunk: bytes) -> bytes:
        if self._passing:
            return chunk
        self._parts.append(chunk)
        self._size += len(chunk)
        if self._size > self.limit:
            self._passing = True
            self.on_unscanned("too_large")
            return self._take()
        return b""

    def _take(self) -> bytes:
        body, self._parts = b"".join(self._parts), []
        return body

    async def finish(self) -> bytes:
        body = self._take()
        if self._passing or not body:
            return body
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):  # a backend's garbage is passed on unscanned, and counted
            self.on_unscanned("not_json")
            return body
        slots = response_slots(payload) if isinstance(payload, dict) else []
        if not slots:
            return body
        verdict = await self.scan([slot.get() for _, slot in slots])
        self.recorder(verdict)
        if verdict.action == Action.BLOCK:
            for choice, slot in slots:
                slot.set("")
                choice["finish_reason"] = "content_filter"
        elif verdict.action == Action.REDACT:
            for index, (_, slot) in enumerate(slots):
                spans: list[Finding] = verdict.redactions(index)
                if spans:
                    slot.set(self.redactor.redact(slot.get(), spans))
        else:
            return body
        return json.dumps(payload).encode()
