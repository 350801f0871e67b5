"""The background side of drift: embed queued texts through the scanner, feed the monitor, run the
statistics off the event loop, publish results. Three tasks under one owner, nothing fire-and-forget.

Windows that close while the statistics thread is busy wait in a short queue
(`max_pending_windows`); past it they are dropped and counted, so a burst costs samples, not memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from detectors.runtime.client import ScannerClient, ScannerError
from drift import DriftMonitor, StreamKey, WindowJob
from proxy.driftwatch.feed import FeedMetrics, Item
from proxy.driftwatch.settings import DriftSettings
from proxy.driftwatch.sink import DriftSink
from proxy.tasks import TaskOwner

log = logging.getLogger("warden.drift")
SCALARS = ("chars", "toxicity_rate", "pii_rate")


class DriftRunner:
    def __init__(self, settings: DriftSettings, monitor: DriftMonitor, queue: asyncio.Queue[Item],
                 scanner: ScannerClient, sink: DriftSink, metrics: FeedMetrics) -> None:
        self.settings = settings
        self.monitor = monitor
        self.queue = queue
        self.scanner = scanner
        self.sink = sink
        self.metrics = metrics
        self.jobs: asyncio.Queue[WindowJob] = asyncio.Queue(maxsize=settings.max_pending_windows)
        self.owner = TaskOwner("drift")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warden-drift")

    def start(self) -> None:
        self.owner.spawn(self._embed_loop(), "embed")
        self.owner.spawn(self._evaluate_loop(), "evaluate")
        self.owner.spawn(self._tick_loop(), "tick")

    async def close(self, grace_s: float) -> None:
        await self.owner.close(min(grace_s, 0.1))
        await asyncio.to_thread(self._executor.shutdown, True, cancel_futures=True)

    async def _embed_loop(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.settings.batch_size and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                result = await self.scanner.scan(self.settings.embed_task, [i.text for i in batch],
                                                 priority="background")
            except ScannerError as exc:
                log.warning("drift: embedding %d texts failed: %s", len(batch), exc)
                self.metrics.dropped.labels("scanner_error").inc(len(batch))
                await asyncio.sleep(0.5)
                continue
            if result.vectors is None:
                self.metrics.dropped.labels("not_an_embedder").inc(len(batch))
                continue
            self._add(batch, result.vectors)

    def _add(self, batch: list[Item], vectors: np.ndarray) -> None:
        groups: dict[StreamKey, list[int]] = {}
        for i, item in enumerate(batch):
            groups.setdefault(StreamKey(item.model, item.stream), []).append(i)
        for key, rows in groups.items():
            scalars = {name: np.array([batch[i].scalars.get(name, np.nan) for i in rows]) for name in SCALARS}
            before = self.monitor.dropped_streams
            for job in self.monitor.add(key, vectors[rows], batch[rows[-1]].arrived, scalars):
                self._submit(job)
            if self.monitor.dropped_streams > before:
                self.metrics.dropped.labels("too_many_streams").inc(self.monitor.dropped_streams - before)

    def _submit(self, job: WindowJob) -> None:
        try:
            self.jobs.put_nowait(job)
        except asyncio.QueueFull:
            self.metrics.dropped.labels("window_backlog").inc()

    async def _evaluate_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = await self.jobs.get()
            try:
                comparison = await loop.run_in_executor(self._executor, self.monitor.compare_job, job)
            except ValueError as exc:  # a reference of another dimension, too few rows: the config's problem
                log.error("drift: window %d of %s/%s not evaluated: %s", job.index, job.key.model, job.key.stream, exc)
                self.metrics.dropped.labels("window_failed").inc()
                continue
            result = self.monitor.record(job, comparison)
            if result.alert_changed:
                log.warning("drift alert %s for %s/%s", "raised" if result.alert else "cleared", job.key.model,
                            job.key.stream)
            self.sink.publish(result)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_s)
            for job in self.monitor.due(time.time()):
                self._submit(job)
