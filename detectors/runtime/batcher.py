"""Micro-batching across callers: collect up to `max_batch` items or `max_wait_ms`, run, fan out.

Two stages run concurrently so the device never waits on the tokenizer: the collector gathers
a batch and tokenises it on its own thread while the runner's thread executes the previous
batch. Items are grouped by token length (power-of-two buckets) so a short text is never
padded to a long neighbour's width. Request-path items are always taken before background
(audit, drift) items. Each priority's queue is bounded: a full queue is an immediate
`Overloaded`, never a wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors.runtime.metrics import ScannerMetrics
from detectors.runtime.protocol import Priority
from detectors.runtime.runner import Runner

log = logging.getLogger("warden.scanner.batcher")
PRIORITIES: tuple[Priority, ...] = ("request", "background")
Row = np.ndarray[Any, Any]


class Overloaded(Exception):
    """The queue for this task and priority is full; the caller applies its fail-open/closed rule."""


class BatchFailed(Exception):
    """The batch holding this item raised; every item of that batch gets this error."""


class ShuttingDown(Exception):
    pass


@dataclass(slots=True)
class _Item:
    text: str
    future: asyncio.Future[Row]
    enqueued: float


Groups = list[tuple[list[int], Any]]


def length_groups(lengths: Sequence[int]) -> list[list[int]]:
    """Indices sorted by length and cut at power-of-two boundaries (1-2, 3-4, 5-8, 9-16, ...)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    groups: list[list[int]] = []
    bucket = -1
    for index in order:
        size = max(lengths[index] - 1, 7).bit_length()  # up to 8 tokens share one bucket
        if size != bucket:
            groups.append([])
            bucket = size
        groups[-1].append(index)
    return groups


class MicroBatcher:
    def __init__(self, runner: Runner, metrics: ScannerMetrics) -> None:
        self.runner = runner
        self.settings = runner.settings
        self.metrics = metrics
        self._queues: dict[Priority, deque[_Item]] = {p: deque() for p in PRIORITIES}
        self._arrived = asyncio.Event()
        self._prepared: asyncio.Queue[tuple[list[_Item], Groups]] = asyncio.Queue(maxsize=1)
        self._tokenizer_thread = ThreadPoolExecutor(1, thread_name_prefix=f"tok-{runner.task}")
        self._device_thread = ThreadPoolExecutor(1, thread_name_prefix=f"run-{runner.task}")
        self._tasks: list[asyncio.Task[None]] = []
        for priority in PRIORITIES:  # every series exists from the start, at 0, for rate() and alerts
            metrics.overloaded.labels(runner.task, priority)
        for stage in ("tokenize", "forward"):
            metrics.errors.labels(runner.task, stage)

    def depth(self, priority: Priority) -> int:
        return len(self._queues[priority])

    def submit(self, texts: Sequence[str], priority: Priority = "request") -> list[asyncio.Future[Row]]:
        queue = self._queues[priority]
        if len(queue) + len(texts) > self.settings.queue_size:
            self.metrics.overloaded.labels(self.runner.task, priority).inc()
            raise Overloaded(f"scanner queue for {self.runner.task!r} ({priority}) is full")
        loop = asyncio.get_running_loop()
        now = loop.time()
        futures: list[asyncio.Future[Row]] = []
        for text in texts:
            future: asyncio.Future[Row] = loop.create_future()
            queue.append(_Item(text, future, now))
            futures.append(future)
        self._arrived.set()
        return futures

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._collect_loop(), name=f"collect-{self.runner.task}"),
            asyncio.create_task(self._run_loop(), name=f"run-{self.runner.task}"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for queue in self._queues.values():
            while queue:
                self._fail([queue.popleft()], ShuttingDown("scanner is shutting down"))
        self._tokenizer_thread.shutdown(wait=True, cancel_futures=True)
        self._device_thread.shutdown(wait=True, cancel_futures=True)

    async def _collect(self) -> list[_Item]:
        loop = asyncio.get_running_loop()
        while not any(self._queues.values()):
            self._arrived.clear()
            await self._arrived.wait()
        oldest = min(q[0].enqueued for q in self._queues.values() if q)
        deadline = oldest + self.settings.max_wait_ms / 1000
        while sum(map(len, self._queues.values())) < self.settings.max_batch and loop.time() < deadline:
            self._arrived.clear()
            try:
                async with asyncio.timeout(deadline - loop.time()):
                    await self._arrived.wait()
            except TimeoutError:
                break
        batch: list[_Item] = []
        for priority in PRIORITIES:
            queue = self._queues[priority]
            while queue and len(batch) < self.settings.max_batch:
                item = queue.popleft()
                if not item.future.done():  # a caller that gave up costs no compute
                    batch.append(item)
        return batch

    def _prepare(self, texts: list[str]) -> Groups:
        ids = self.runner.tokenize(texts)
        return [(group, self.runner.collate([ids[i] for i in group])) for group in length_groups([len(r) for r in ids])]

    def _execute(self, groups: Groups) -> list[Row]:
        return [self.runner.forward(batch) for _, batch in groups]

    async def _collect_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._collect()
            if not items:
                continue
            try:
                groups = await loop.run_in_executor(self._tokenizer_thread, self._prepare, [i.text for i in items])
            except Exception as exc:
                self._batch_error(items, exc, "tokenize")
                continue
            await self._prepared.put((items, groups))

    async def _run_loop(self) -> None:
        loop = asyncio.get_running_loop()
        task = self.runner.task
        while True:
            items, groups = await self._prepared.get()
            started = loop.time()
            try:
                outputs = await loop.run_in_executor(self._device_thread, self._execute, groups)
            except Exception as exc:
                self._batch_error(items, exc, "forward")
                continue
            for (indices, _), output in zip(groups, outputs, strict=True):
                for row, index in enumerate(indices):
                    future = items[index].future
                    if not future.done():
                        future.set_result(output[row])
            self.metrics.batch_size.labels(task).observe(len(items))
            self.metrics.batch_seconds.labels(task).observe(loop.time() - started)
            self.metrics.items.labels(task).inc(len(items))

    def _batch_error(self, items: list[_Item], exc: Exception, stage: str) -> None:
        log.error("scanner batch of %d for %r failed in %s: %r", len(items), self.runner.task, stage, exc)
        self.metrics.errors.labels(self.runner.task, stage).inc()
        self._fail(items, BatchFailed(f"{stage} failed: {type(exc).__name__}: {exc}"))

    @staticmethod
    def _fail(items: list[_Item], error: Exception) -> None:
        for item in items:
            if not item.future.done():
                item.future.set_exception(error)
