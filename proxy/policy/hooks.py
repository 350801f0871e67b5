"""The two callables a response transform needs, so transforms know nothing of the service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from proxy.policy.engine import Verdict

Scan = Callable[[str], Awaitable[Verdict]]  # one response text -> its verdict
Recorder = Callable[[Verdict], None]  # metrics and audit for a verdict


class ResponseTransform(Protocol):
    """Sits in the relay between upstream chunks and the client."""

    stopped: bool

    async def feed(self, chunk: bytes) -> bytes: ...
    async def finish(self) -> bytes: ...
