"""An owner for background work (after-the-fact scans, audit writes): nothing is fire-and-forget.

A loop that must run for the life of the service (`keep`) is restarted by its owner when it dies,
with a growing pause, and each restart is counted: one bad value (a request's lone surrogate in a
traffic count) once ended such a loop for every tenant until the process restarted.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("warden.tasks")


class TaskOwner:
    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self.restarts: Counter[str] = Counter()  # per kept loop; read by TaskRestarts at scrape time

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{self.name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def keep(self, factory: Callable[[], Coroutine[Any, Any, Any]], name: str,
             backoff_s: tuple[float, float] = (0.5, 30.0)) -> asyncio.Task[Any]:
        """Run `factory()` until it returns or the owner closes; restart it after each failure."""
        return self.spawn(self._keep(factory, name, backoff_s), name)

    async def _keep(self, factory: Callable[[], Coroutine[Any, Any, Any]], name: str,
                    backoff_s: tuple[float, float]) -> None:
        delay = backoff_s[0]
        while True:
            started = asyncio.get_running_loop().time()
            try:
                await factory()
                return
            except Exception as exc:
                self.restarts[name] += 1
                log.error("background task %s:%s failed (%s); restart %d in %.2gs", self.name, name,
                          type(exc).__name__, self.restarts[name], delay, exc_info=exc)
            if asyncio.get_running_loop().time() - started > backoff_s[1]:
                delay = backoff_s[0]  # it had run well for a while: this failure is a new one
            await asyncio.sleep(delay)
            delay = min(delay * 2, backoff_s[1])

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def close(self, grace_s: float) -> None:
        """Let running work finish for `grace_s`, then cancel what is left and wait for it."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_s)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class TaskRestarts(Collector):
    """`warden_background_task_restarts_total{owner,task}`, read from the owners at scrape time."""

    def __init__(self, owners: Iterable[TaskOwner]) -> None:
        self.owners = list(owners)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("warden_background_task_restarts",
                                     "Background loops restarted by their owner after they failed.",
                                     labels=["owner", "task"])
        for owner in self.owners:
            for task, n in owner.restarts.items():
                family.add_metric([owner.name, task], n)
        yield family
