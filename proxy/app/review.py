"""How review joins the app: its routes at build time, its service for the app's lifetime.

Routes must exist before the app starts (the router freezes), while the store opens in a
cleanup context; the `ReviewWeb` holder bridges the two, answering 503 while no service runs.
The holder's login hash pool starts no thread until the first login, and the context shuts it down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from proxy.review.metrics import ReviewMetrics
from proxy.review.sampler import policy_thresholds
from proxy.review.service import ReviewService
from proxy.review.sqlite_store import SQLiteStore
from proxy.review.web import ReviewWeb, add_review_routes
from proxy.state import STATE, ProxyState
from proxy.tasks import TaskRestarts

REVIEW = web.AppKey("warden_review", ReviewWeb)


def install_review(app: web.Application) -> None:
    """Adds the /review routes when review is enabled; called while the app is being built."""
    settings = app[STATE].settings.review
    if settings.enabled:
        app[REVIEW] = ReviewWeb(settings)
        add_review_routes(app, app[REVIEW])


def review_context(state: ProxyState) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        holder = app.get(REVIEW)
        if holder is None:
            yield
            return

        sealer = state.sealer

        def emit(table: str, row: dict[str, Any]) -> None:
            if sealer is not None and table == "review_samples":  # text columns sealed in ClickHouse too
                for column in ("prompt", "output"):
                    row[column] = sealer.seal_str(row[column], f"review_samples/{row['sample_id']}/{column}".encode())
            if state.telemetry is not None:  # read at call time: the writer may be off
                state.telemetry.emit(table, row)

        rules = [(r.detector, r.label, r.threshold) for r in state.settings.policy.rules]
        metrics = ReviewMetrics(state.registry, state.metrics.model_label)
        store = SQLiteStore(holder.settings.db_path, sealer)
        service = ReviewService(holder.settings, store, emit, policy_thresholds(rules), metrics=metrics)
        await service.start()
        restarts = TaskRestarts([service.tasks])
        state.registry.register(restarts)
        holder.service = service
        state.observers.append(service.observe)
        try:
            yield
        finally:
            state.observers.remove(service.observe)
            holder.service = None
            state.registry.unregister(restarts)
            await service.stop(state.settings.server.shutdown_grace_s)
            await holder.close()  # the login hash pool

    return ctx
