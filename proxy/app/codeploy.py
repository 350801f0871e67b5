"""The two cleanup contexts co-deploy adds to the app.

`managed_ctx` runs before the client session and the health prober, so replicas are in the
pool when the prober first looks, and after aiohttp's graceful shutdown has let requests finish
and the session has closed, it drains and stops the processes: traffic first, servers last.
`traffic_ctx` runs last, when the policy exists: load scraping, smoke tests, the rollback
watcher and their metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from proxy.codeploy.manager import CoDeploy
from proxy.codeploy.metrics import CoDeployCollector
from proxy.codeploy.rollout import Rollout, RolloutController
from proxy.codeploy.signals import LoadScraper
from proxy.state import ProxyState
from proxy.tasks import TaskOwner
from proxy.telemetry.events import health_listener

log = logging.getLogger("warden.codeploy")
Ctx = Callable[[web.Application], AsyncIterator[None]]


def managed_ctx(state: ProxyState) -> Ctx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        listener = health_listener(state.telemetry.emit) if state.telemetry is not None else None
        manager = CoDeploy(state.pool, listener)
        if not manager:
            yield
            return
        await manager.start()
        state.managed = manager
        try:
            yield
        finally:
            state.managed = None
            await manager.stop(drain_s=state.settings.server.shutdown_grace_s)

    return ctx


async def _smoke_when_ready(state: ProxyState, controller: RolloutController, rollout: Rollout) -> None:
    """Waits for every backend of the new version: a replica still loading would escape the test."""
    # Availability is set by replicas and the prober alike, with no event to wait on: poll, once.
    while not (rollout.canary.backends and all(b.available for b in rollout.canary.backends)):  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    await controller.smoke(rollout, state.session, state.policy)


def traffic_ctx(state: ProxyState) -> Ctx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        scraper = LoadScraper(state.pool, state.session)
        controller = RolloutController(state.pool, state.telemetry.emit if state.telemetry is not None else None)
        background = TaskOwner("codeploy")
        if scraper.groups:
            background.spawn(scraper.run(), "load-scraper")
        for rollout in controller.rollouts.values():
            if rollout.settings.smoke is not None:
                background.spawn(_smoke_when_ready(state, controller, rollout), f"smoke {rollout.canary.name}")
        if controller.watching:
            state.observers.append(controller.observer)
        collector = CoDeployCollector(state.pool, scraper, controller, state.managed)
        state.registry.register(collector)
        state.rollouts = controller
        try:
            yield
        finally:
            state.rollouts = None
            state.registry.unregister(collector)
            if controller.observer in state.observers:
                state.observers.remove(controller.observer)
            await background.close(grace_s=0.0)

    return ctx
