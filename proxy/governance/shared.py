"""Limits exact across the proxy workers of one host: one owner, the supervisor, without Redis.

`warden serve --workers N` runs N event loops; a limiter in each would admit N times a tenant's
limit. The supervisor runs the one in-memory limiter (limits.py, `MemoryLimiter`) behind a local
socket, on its own event loop, so every check-and-take is atomic for the whole host; each worker
asks it (`SharedLimiter`, one round trip per admission). A worker that dies gives its
concurrency slots back at once (end of its stream), not after a TTL. Redis stays the answer for
several hosts. The same connection answers readiness (`status`) and carries the supervisor's own
metrics (`metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from proxy.governance.limits import Grant, Limits, MemoryLimiter, Refusal
from proxy.telemetry.wire import ADMIT, METRICS, READY, SETTLE, STATUS, FrameError, Link, Peer, read_frame

log = logging.getLogger("warden.governance.shared")


class HubServer:
    """The supervisor's side: the host's limiter, and what it knows of its processes."""

    def __init__(self, socket_path: Path, status: Callable[[], dict[str, Any]],
                 metrics: Callable[[], str], on_ready: Callable[[int], None]) -> None:
        self.socket_path = socket_path
        self.limiter = MemoryLimiter()
        self._status = status
        self._metrics = metrics
        self._on_ready = on_ready
        self._server: asyncio.AbstractServer | None = None
        self._streams: set[asyncio.StreamWriter] = set()

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
        held: dict[str, str] = {}  # slot -> tenant: concurrency this worker holds
        try:
            while True:
                kind, body = await read_frame(reader)
                if kind == ADMIT:
                    peer.reply(body[0], True, self._admit(held, *body[1:]))
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
        except (asyncio.IncompleteReadError, ConnectionError, FrameError, OSError):
            pass
        finally:
            self._streams.discard(stream)
            now = time.monotonic()
            for slot, tenant in held.items():  # a worker gone (crash or stop): its slots are free again
                self.limiter.release(Grant(tenant, slot, {}, False), 0, 0, now)
            stream.close()

    def _admit(self, held: dict[str, str], tenant: str, rpm: int | None, tpm: int | None, concurrency: int | None,
               charge: int, slot: str) -> tuple[Any, ...]:
        limits = Limits(rpm, tpm, concurrency, slot_ttl_s=0.0)  # no TTL: a dead worker's slots free at once
        granted = self.limiter.admit_now(tenant, limits, charge, slot, time.monotonic())
        if isinstance(granted, Refusal):
            return (False, granted.code, granted.message, granted.retry_after_s, granted.headers)
        held[slot] = tenant
        return (True, granted.headers, granted.counts_tokens)


class HubLink:
    """A worker's connection to the supervisor; requests fail (ConnectionError) while it is away."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.link: Link | None = None

    async def open(self) -> None:
        self.link = await Link.connect(str(self.path))

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


@dataclass(frozen=True)
class WorkerRole:
    """What a proxy worker started by the supervisor knows of its place: its number, its siblings, the sockets."""

    index: int
    workers: int
    run_dir: Path
    hub: HubLink

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
