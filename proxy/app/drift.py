"""The drift cleanup context: builds the monitor (with pinned references), the feed and the runner,
registers the observer, and takes it all down in reverse order."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from drift import DriftMonitor
from proxy.driftwatch.feed import DriftFeed, FeedMetrics
from proxy.driftwatch.reference import load_clickhouse, load_file
from proxy.driftwatch.runner import SCALARS, DriftRunner
from proxy.driftwatch.settings import DriftSettings
from proxy.driftwatch.sink import DriftSink

if TYPE_CHECKING:
    from proxy.state import ProxyState

log = logging.getLogger("warden.drift")


async def _monitor(state: ProxyState, settings: DriftSettings) -> DriftMonitor:
    monitor = DriftMonitor(settings.monitor_config(), scalar_names=SCALARS)
    ref = settings.reference
    pinned = {}
    if ref.source == "file" and ref.path:
        pinned = load_file(ref.path)
    elif ref.source == "clickhouse" and ref.start and ref.end:
        writer = state.telemetry
        if writer is None or writer.store is None:
            raise RuntimeError("drift.reference.source is clickhouse, but the telemetry store is not reachable")
        pinned = await load_clickhouse(writer.store, writer.target.qualified("drift_samples"), ref.start, ref.end,
                                       ref.size, state.sealer)
    for key, reference in pinned.items():
        monitor.pin(key, reference)
    log.info("drift: %d pinned reference stream(s); others use their first %d rows", len(pinned), ref.size)
    return monitor


def drift_ctx(state: ProxyState) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = state.settings.drift
        if not settings.enabled:
            yield
            return
        scanner = state.scanner
        tasks = await scanner.ping() if scanner is not None else {}
        task = tasks.get(settings.embed_task)
        if scanner is None or task is None or task.output != "vectors":
            raise RuntimeError(f"drift is enabled but the scanner has no embedder task {settings.embed_task!r} "
                               f"(tasks: {sorted(tasks)}); add a scanner.models entry with kind: embedder")
        metrics = FeedMetrics(state.registry)
        feed = DriftFeed(settings, metrics)
        emit = state.telemetry.emit if state.telemetry is not None else None
        sink = DriftSink(state.registry, emit, settings.tests.min_votes, feed.queue.qsize, state.sealer)
        runner = DriftRunner(settings, await _monitor(state, settings), feed.queue, scanner, sink, metrics)
        runner.start()
        state.observers.append(feed.observe)
        try:
            yield
        finally:
            state.observers.remove(feed.observe)
            await runner.close(state.settings.server.shutdown_grace_s)
            state.registry.unregister(sink)

    return ctx
