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
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors.runtime.metrics import ScannerMetrics
from detectors.runtime.protocol import Priority
from detectors.runtime.runner import Runner
from detectors.runtime.settings import ONE_WIDTH_KINDS

log = logging.getLogger("warden.scanner.batcher")
PRIORITIES: tuple[Priority, ...] = ("request", "background")
Row = np.ndarray[Any, Any]


class Overloaded(Exception):
    """The queue for this task and priority is full; the caller applies its fail-open/closed rule."""


class BatchFailed(Exception):
    """The batch holding this item raised; every item of that batch gets this error."""


class ShuttingDown(Exception):
    pass


@dataclass(slots=True, eq=False)
class Work:
    """One frame's texts: taken by batches in order (a frame may span several), answered when its last
    row lands. Rows are written into `out`, one block per batch slice: nothing per text is allocated
    or awaited on the event loop, which is what kept one process from feeding a GPU."""

    texts: list[str]
    future: asyncio.Future[Any]
    enqueued: float
    tokens: list[Any] | None = None  # given token ids per text (None or empty: tokenize it)
    single: bool = False  # answer the row itself, not a block of one (the per-text `submit`)
    out: Any = None  # rows x width float32, or a list of span lists; allocated on the first result
    taken: int = 0  # texts already handed to a batch
    left: int = -1  # rows not yet written

    def __post_init__(self) -> None:
        self.left = len(self.texts)


@dataclass(slots=True)
class _Batch:
    slices: list[tuple[Work, int, int]]  # (work, first, stop) in batch order
    texts: list[str]
    given: list[Any] | None  # token ids per batch position where the caller sent them


Groups = list[tuple[list[int], Any]]


def _set_threads(threads: int | None) -> None:
    """A model's own intra-op threads, set on its device thread. torch keeps the count per thread
    but gives a thread, at its first op, the count the last `set_num_threads` anywhere stored:
    reading it first settles that, so another model's device thread cannot override this one's
    (the BiLSTM beside PII ran on 2 threads, at ~4x the CPU per text)."""
    if threads is not None:
        import torch

        torch.get_num_threads()  # this thread's lazy start, taken now
        torch.set_num_threads(threads)


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
    def __init__(self, runner: Runner, metrics: ScannerMetrics, threads: int | None = None) -> None:
        self.runner = runner
        self.settings = runner.settings
        self.metrics = metrics
        self._queues: dict[Priority, deque[Work]] = {p: deque() for p in PRIORITIES}
        self._waiting: dict[Priority, int] = {p: 0 for p in PRIORITIES}  # texts not yet in a batch
        self._arrived = asyncio.Event()
        self._prepared: asyncio.Queue[tuple[_Batch, Groups]] = asyncio.Queue(maxsize=1)
        self._in_flight = 0  # batches taken and not yet answered: while none is, a text need not wait
        self._tokenizer_thread = ThreadPoolExecutor(1, thread_name_prefix=f"tok-{runner.task}")
        self._device_thread = ThreadPoolExecutor(1, thread_name_prefix=f"run-{runner.task}", initializer=_set_threads,
                                                 initargs=(self.settings.forward_threads(threads),))
        self._one_width = self.settings.kind in ONE_WIDTH_KINDS
        self._tasks: list[asyncio.Task[None]] = []
        for priority in PRIORITIES:  # every series exists from the start, at 0, for rate() and alerts
            metrics.overloaded.labels(runner.task, priority)
        for stage in ("tokenize", "forward"):
            metrics.errors.labels(runner.task, stage)

    def depth(self, priority: Priority) -> int:
        return self._waiting[priority]

    def submit_work(self, texts: list[str], priority: Priority = "request",
                    tokens: list[Any] | None = None) -> asyncio.Future[Any]:
        """One future for all `texts`: their rows (a float32 block, or span lists) in order."""
        return self._enqueue([Work(texts, self._future(priority, len(texts)), self._now(), tokens)], priority)[0]

    def submit(self, texts: Sequence[str], priority: Priority = "request") -> list[asyncio.Future[Row]]:
        """One future per text, each answered with its own row: for in-process callers and tests."""
        self._future(priority, len(texts))  # the bound, checked once for all of them
        loop, now = asyncio.get_running_loop(), self._now()
        return self._enqueue([Work([text], loop.create_future(), now, single=True) for text in texts], priority)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _future(self, priority: Priority, count: int) -> asyncio.Future[Any]:
        if self._waiting[priority] + count > self.settings.queue_size:
            self.metrics.overloaded.labels(self.runner.task, priority).inc()
            raise Overloaded(f"scanner queue for {self.runner.task!r} ({priority}) is full")
        return asyncio.get_running_loop().create_future()

    def _enqueue(self, works: list[Work], priority: Priority) -> list[asyncio.Future[Any]]:
        self._queues[priority].extend(works)
        self._waiting[priority] += sum(len(w.texts) for w in works)
        self._arrived.set()
        return [w.future for w in works]

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
        for priority, queue in self._queues.items():
            self._fail(list(queue), ShuttingDown("scanner is shutting down"))
            queue.clear()
            self._waiting[priority] = 0
        self._tokenizer_thread.shutdown(wait=True, cancel_futures=True)
        self._device_thread.shutdown(wait=True, cancel_futures=True)

    async def _collect(self) -> _Batch:
        loop = asyncio.get_running_loop()
        while not any(self._queues.values()):
            self._arrived.clear()
            await self._arrived.wait()
        oldest = min(q[0].enqueued for q in self._queues.values() if q)
        deadline = oldest + self.settings.max_wait_ms / 1000
        # Waiting for a fuller batch pays only while a batch is in flight (texts would queue anyway);
        # a model with nothing to do takes what is there at once, and a finished batch ends the wait.
        while (self._in_flight and sum(self._waiting.values()) < self.settings.max_batch
               and loop.time() < deadline):
            self._arrived.clear()
            try:
                async with asyncio.timeout(deadline - loop.time()):
                    await self._arrived.wait()
            except TimeoutError:
                break
        return self._take()

    def _take(self) -> _Batch:
        """Up to max_batch texts, request priority first; a frame too big for one batch goes on in the next."""
        batch = _Batch([], [], None)
        room = self.settings.max_batch
        for priority in PRIORITIES:
            queue = self._queues[priority]
            while queue and room:
                work = queue[0]
                if work.future.done():  # a caller that gave up costs no compute
                    queue.popleft()
                    self._waiting[priority] -= len(work.texts) - work.taken
                    continue
                first = work.taken
                stop = min(len(work.texts), first + room)
                if work.tokens is not None:
                    if batch.given is None:
                        batch.given = [None] * len(batch.texts)
                    batch.given += work.tokens[first:stop]
                elif batch.given is not None:
                    batch.given += [None] * (stop - first)
                batch.slices.append((work, first, stop))
                batch.texts += work.texts[first:stop] if first or stop < len(work.texts) else work.texts
                work.taken = stop
                room -= stop - first
                self._waiting[priority] -= stop - first
                if stop == len(work.texts):
                    queue.popleft()
        return batch

    def _prepare(self, batch: _Batch) -> Groups:
        started = time.thread_time()
        try:
            return self._tokenized(batch)
        finally:
            self.metrics.cpu.labels(self.runner.task, "tokenize").inc(time.thread_time() - started)

    def _tokenized(self, batch: _Batch) -> Groups:
        ids: list[Any]
        if batch.given is None:
            ids = list(self.runner.tokenize(batch.texts))
        else:
            ids = list(batch.given)
            needed = [i for i, given in enumerate(ids) if given is None or not len(given)]
            for i, made in zip(needed, self.runner.tokenize([batch.texts[i] for i in needed]), strict=True):
                ids[i] = made
        groups = [list(range(len(ids)))] if self._one_width else length_groups([len(r) for r in ids])
        return [(group, self.runner.collate([ids[i] for i in group])) for group in groups]

    def _execute(self, groups: Groups) -> list[Any]:
        """The forward passes, their thread CPU billed to `forward` less what the runner bills to its
        own stages (`stage_seconds`, cumulative: PII's ner and recognizers)."""
        stages: dict[str, float] = getattr(self.runner, "stage_seconds", {})
        before = dict(stages)
        started = time.thread_time()
        try:
            return [self.runner.forward(batch) for _, batch in groups]
        finally:
            spent = time.thread_time() - started
            for stage, total in list(stages.items()):
                if total > before.get(stage, 0.0):
                    self.metrics.cpu.labels(self.runner.task, stage).inc(total - before.get(stage, 0.0))
                    spent -= total - before.get(stage, 0.0)
            self.metrics.cpu.labels(self.runner.task, "forward").inc(max(spent, 0.0))

    async def _collect_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch.slices:
                continue
            self._in_flight += 1
            try:
                groups = await loop.run_in_executor(self._tokenizer_thread, self._prepare, batch)
            except Exception as exc:
                self._batch_error(batch, exc, "tokenize")
                self._landed()
                continue
            await self._prepared.put((batch, groups))

    async def _run_loop(self) -> None:
        loop = asyncio.get_running_loop()
        task = self.runner.task
        while True:
            batch, groups = await self._prepared.get()
            started = loop.time()
            try:
                outputs = await loop.run_in_executor(self._device_thread, self._execute, groups)
                self._scatter(batch, groups, outputs)
            except Exception as exc:
                self._batch_error(batch, exc, "forward")
                continue
            finally:
                self._landed()
            self.metrics.batch_size.labels(task).observe(len(batch.texts))
            self.metrics.batch_seconds.labels(task).observe(loop.time() - started)
            self.metrics.items.labels(task).inc(len(batch.texts))

    def _landed(self) -> None:
        self._in_flight -= 1
        self._arrived.set()  # a collector waiting for a fuller batch may go now

    @staticmethod
    def _scatter(batch: _Batch, groups: Groups, outputs: list[Any]) -> None:
        """Put each group's rows back in batch order, then one block copy per frame slice."""
        rows: Any
        if all(isinstance(o, np.ndarray) for o in outputs):
            rows = np.empty((len(batch.texts), outputs[0].shape[1]), dtype=np.float32)
            for (indices, _), output in zip(groups, outputs, strict=True):
                rows[indices] = output
        else:  # spans: one list per text
            rows = [None] * len(batch.texts)
            for (indices, _), output in zip(groups, outputs, strict=True):
                for row, index in enumerate(indices):
                    rows[index] = output[row]
        offset = 0
        for work, first, stop in batch.slices:
            count = stop - first
            if not work.future.done():
                if work.out is None:
                    work.out = (np.empty((len(work.texts), rows.shape[1]), dtype=np.float32)
                                if isinstance(rows, np.ndarray) else [None] * len(work.texts))
                work.out[first:stop] = rows[offset:offset + count]
                work.left -= count
                if not work.left:
                    work.future.set_result(work.out[0] if work.single else work.out)
            offset += count

    def _batch_error(self, batch: _Batch, exc: Exception, stage: str) -> None:
        log.error("scanner batch of %d for %r failed in %s: %r", len(batch.texts), self.runner.task, stage, exc)
        self.metrics.errors.labels(self.runner.task, stage).inc()
        self._fail([work for work, _, _ in batch.slices], BatchFailed(f"{stage} failed: {type(exc).__name__}: {exc}"))

    @staticmethod
    def _fail(works: list[Work], error: Exception) -> None:
        for work in works:
            if not work.future.done():
                work.future.set_exception(error)
