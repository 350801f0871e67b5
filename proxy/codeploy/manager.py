"""Every managed replica of every group: created with the app, started before traffic, stopped last.

Replicas join their group as backends at once but unavailable, so `/readyz` and the metrics
show them from the start; the proxy serves while they load rather than waiting for the
slowest model, and `/readyz` turns ready when each group has a replica up.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable

import aiohttp

from proxy.codeploy.replica import Replica
from proxy.codeploy.settings import deployed
from proxy.tasks import TaskOwner
from proxy.upstream import Backend, UpstreamPool

log = logging.getLogger("warden.codeploy")
Listener = Callable[[Backend, str, str], None]


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class CoDeploy:
    def __init__(self, pool: UpstreamPool, listener: Listener | None = None) -> None:
        self.replicas: list[Replica] = []
        for group in pool.groups:
            managed = deployed(group.settings).managed
            if managed is None:
                continue
            for index in range(managed.replicas):
                # Chosen once: a restarted replica comes back on the same URL, so its backend stays the same.
                port = managed.base_port + index if managed.base_port else free_port(managed.host)
                backend = Backend(url=f"http://{managed.host}:{port}", group=group.name, health=group.settings.health,
                                  max_concurrency=group.settings.max_concurrency, healthy=False, listener=listener)
                group.add_backend(backend)
                self.replicas.append(Replica(group, index, port, backend, managed))
        self._tasks = TaskOwner("codeploy")
        self._runners: dict[Replica, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None

    def __bool__(self) -> bool:
        return bool(self.replicas)

    async def start(self) -> None:
        """Spawns every replica and returns at once; each becomes available when its ready path answers."""
        self._session = aiohttp.ClientSession()
        for replica in self.replicas:
            self._runners[replica] = self._tasks.spawn(replica.run(self._session), replica.name)

    async def wait_ready(self, timeout_s: float) -> bool:
        """For callers that want every replica up (tests, `warden up`-style starts)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(r.state == "ready" for r in self.replicas):
                return True
            await asyncio.sleep(0.05)
        return False

    async def stop(self, drain_s: float) -> None:
        """Drain (no new requests; those in flight may finish for `drain_s`), then stop every process."""
        for replica in self.replicas:
            replica.backend.mark(False, "shutting down")
        deadline = time.monotonic() + drain_s
        # Outstanding counts change in the relay, which has no notifier to spare; a 50 ms poll is cheap here.
        while any(r.backend.outstanding for r in self.replicas) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.gather(*(r.stop(self._runners.get(r)) for r in self.replicas))
        await self._tasks.close(grace_s=0.0)
        if self._session is not None:
            await self._session.close()
        log.info("stopped %d managed replica(s)", len(self.replicas))

    def describe(self) -> dict[str, list[dict[str, object]]]:
        groups: dict[str, list[dict[str, object]]] = {}
        for replica in self.replicas:
            groups.setdefault(replica.group.name, []).append(replica.describe())
        return groups
