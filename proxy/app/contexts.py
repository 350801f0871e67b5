"""The cleanup contexts of the proxy's own resources: clients, health probes, scanner, telemetry, policy, cache.

Each context opens one resource when the app starts and closes it when the app stops, in mirror
order; the factory (proxy/app/factory.py) lists them, with the wings' contexts, in one ordered list.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from importlib.metadata import PackageNotFoundError, version

import aiohttp
from aiohttp import web

from detectors.runtime.client import ScannerClient
from detectors.runtime.supervisor import ScannerSupervisor
from proxy.cache.service import ResponseCache
from proxy.policy.audit_sink import detections_sink
from proxy.policy.build import build_policy
from proxy.policy.metrics import PolicyMetrics
from proxy.sealing import load_sealer
from proxy.state import ProxyState
from proxy.tasks import TaskOwner
from proxy.telemetry import TelemetryWriter
from proxy.telemetry.commands import telemetry_socket
from proxy.telemetry.events import health_listener
from proxy.telemetry.process import TelemetryServer
from proxy.telemetry.remote import RemoteWriter
from proxy.tracing.export import SpanCounts, build_provider, plan
from proxy.tracing.spans import Tracing
from proxy.upstream import HealthProber
from proxy.upstream.http1 import Http1Client

log = logging.getLogger("warden.app")

Context = Callable[[web.Application], AsyncIterator[None]]


def sealing_ctx(state: ProxyState) -> Context:
    """The data key ring, read once before any store opens: a missing or bad key stops the start here."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        state.sealer = await asyncio.to_thread(load_sealer, state.settings.encryption)  # a file or a KMS command
        try:
            yield
        finally:
            state.sealer = None

    return ctx


def client_session_ctx(state: ProxyState) -> Context:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        # No auto headers and no decompression: the client's headers and the upstream's bytes
        # pass through as they are.
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30, enable_cleanup_closed=True)
        session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )
        timeouts = state.settings.timeouts
        client = Http1Client(timeouts.connect_s, timeouts.read_s)
        state.attach(session, client)
        try:
            yield
        finally:
            state.attach(None, None)
            await client.close()
            await session.close()

    return ctx


def health_ctx(state: ProxyState) -> Context:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        prober = HealthProber(state.pool, state.session)
        await prober.start()
        try:
            yield
        finally:
            await prober.stop()

    return ctx


def tracing_ctx(state: ProxyState) -> Context:
    """The tracer provider and its exporting thread live as long as the app; shutdown drains them off the loop."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        export = plan(state.settings.telemetry.otel, os.environ)
        if export is None:
            yield
            return
        try:
            release = version("llm-warden")
        except PackageNotFoundError:
            release = "unknown"
        provider, queue = build_provider(export, release)
        counts = SpanCounts(queue)
        state.registry.register(counts)
        state.tracing = Tracing(provider.get_tracer("warden", release))
        log.info("tracing on: spans to %s (sample ratio %g, service %s)", export.shown,
                 export.sample_ratio, export.service_name)
        try:
            yield
        finally:
            state.tracing = None
            await asyncio.to_thread(provider.shutdown)  # joins the exporting thread: never on the loop
            state.registry.unregister(counts)

    return ctx


def scanner_ctx(state: ProxyState, supervised: bool = False) -> Context:
    """`supervised`: a worker of `warden serve --workers N`, whose supervisor runs the managed scanner."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = state.settings.scanner
        if settings.mode == "off" or (settings.mode == "managed" and not settings.models):
            reason = "scanner.mode is off" if settings.mode == "off" else "no scanner.models configured"
            log.warning("scanner not started (%s): no detector will run", reason)
            yield
            return
        supervisor = (ScannerSupervisor(settings, log_format=state.settings.server.log_format)
                      if settings.mode == "managed" and not supervised else None)
        if supervisor is not None:
            await supervisor.start()  # returns once models are loaded and warmed up
        state.scanner = ScannerClient(settings.address, settings.call_timeout_s)
        try:
            yield
        finally:
            await state.scanner.close()
            state.scanner = None
            if supervisor is not None:
                await supervisor.stop()

    return ctx


def telemetry_ctx(state: ProxyState, worker: int | None = None) -> Context:
    """The writer lives as long as the app; with the embedded store (chDB) only one process may run.

    A worker of `warden serve --workers N` (`worker` is its number) hands its rows to the
    telemetry process instead (proxy/telemetry/remote.py), which owns the store.
    """

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if not state.settings.telemetry.enabled:
            yield
            return
        sealer = state.sealer
        writer = TelemetryWriter(state.settings.telemetry, state.registry, sealer=sealer) if worker is None else \
            RemoteWriter(state.settings.telemetry, state.registry, worker, sealer=sealer)
        await writer.start()
        state.telemetry = writer
        # A single Warden owns the embedded store as the telemetry process does under --workers: it answers
        # `warden query` on the same socket, since no other process may open the directory while it runs.
        queries = TelemetryServer(writer, telemetry_socket(state.settings.telemetry), state.registry) \
            if worker is None and state.settings.telemetry.dsn.startswith("chdb://") else None
        if queries is not None:
            await queries.start()
        listener = health_listener(writer.emit)
        for backend in state.pool.backends():
            backend.listener = listener
        try:
            yield
        finally:
            for backend in state.pool.backends():
                backend.listener = None
            if queries is not None:
                await queries.stop(state.settings.server.shutdown_grace_s)
            state.telemetry = None
            await writer.stop()

    return ctx


def policy_ctx(state: ProxyState) -> Context:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if not state.settings.detectors:
            log.warning("no detectors configured: requests and responses pass unscanned")
            yield
            return
        background = TaskOwner("policy")
        state.policy = await build_policy(state.settings.detectors, state.settings.policy, state.scanner,
                                          PolicyMetrics(state.registry), background)
        if state.telemetry is not None:
            detectors = {e.detector.name: e.detector for e in state.policy.chain.entries}
            state.policy.sinks.append(detections_sink(
                state.telemetry.emit, lambda name: str(getattr(detectors.get(name), "version", ""))))
        try:
            yield
        finally:
            state.policy = None
            await background.close(state.settings.server.shutdown_grace_s)

    return ctx


def cache_ctx(state: ProxyState) -> Context:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        background = TaskOwner("cache")  # stores answers after their exchange ended
        emit = state.telemetry.emit if state.telemetry is not None else None
        state.cache = ResponseCache(state.settings.cache, state.registry, background, emit, sealer=state.sealer)
        try:
            yield
        finally:
            cache, state.cache = state.cache, None
            await background.close(state.settings.server.shutdown_grace_s)
            await cache.close()

    return ctx
