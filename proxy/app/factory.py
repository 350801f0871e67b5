"""The application factory: composes state, routes, one middleware, and a cleanup context per wing.

This package is the composition root: the only place that knows every wing. The contexts run in
the order of one list, so start-up and shutdown (its mirror) read top to bottom in one place.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy.app.codeploy import managed_ctx, traffic_ctx
from proxy.app.contexts import (
    Context,
    cache_ctx,
    client_session_ctx,
    health_ctx,
    policy_ctx,
    scanner_ctx,
    sealing_ctx,
    telemetry_ctx,
    tracing_ctx,
)
from proxy.app.drift import drift_ctx
from proxy.app.governance import governance_ctx
from proxy.app.guard import route_guard
from proxy.app.middleware import exchange_middleware
from proxy.app.review import REVIEW, install_review, review_context
from proxy.app.worker import merged_metrics, shared_limits_ctx, sibling_metrics_ctx
from proxy.cache.service import add_cache_header
from proxy.control.admin import add_admin_routes
from proxy.control.listener import ADMIN_SITE, AdminSite, admin_app, control_plane_elsewhere
from proxy.governance.shared import WORKER, WorkerRole
from proxy.metrics import ProxyMetrics
from proxy.routes import add_routes
from proxy.settings import WardenSettings
from proxy.state import STATE, ProxyState
from proxy.upstream import UpstreamPool


def contexts(state: ProxyState, role: WorkerRole | None = None) -> list[Context]:
    """Every resource of the app, in start order (shutdown runs the other way).

    `role`: a worker under the supervisor (proxy/app/worker.py): telemetry goes to the telemetry
    process, limits to the supervisor's limiter, and the supervisor runs the scanner.
    """
    cache = [cache_ctx(state)] if state.settings.cache.enabled else []
    shared = [shared_limits_ctx(state, role), sibling_metrics_ctx(state, role)] if role is not None else []
    return [
        sealing_ctx(state),  # the data key ring before any store opens (encryption at rest; a bad key stops here)
        tracing_ctx(state),  # spans of every request, shutdown's included, leave before the provider stops
        telemetry_ctx(state, role.index if role is not None else None),  # first in, last out: it records to the end
        governance_ctx(state),
        *shared,
        managed_ctx(state),  # model servers Warden runs: up before the prober, down last
        client_session_ctx(state),
        health_ctx(state),
        scanner_ctx(state, supervised=role is not None),
        policy_ctx(state),
        review_context(state),  # the review queue's store and sampler, when enabled
        drift_ctx(state),  # embeddings and drift statistics off the loop, when enabled
        *cache,
        traffic_ctx(state),  # load signals, canary smoke tests and rollback, once policy is up
    ]


def create_app(settings: WardenSettings, registry: CollectorRegistry | None = None,
               config_path: Path | None = None, role: WorkerRole | None = None) -> web.Application:
    registry = registry if registry is not None else CollectorRegistry()
    pool = UpstreamPool.from_settings(settings.upstreams)
    state = ProxyState(settings=settings, pool=pool, registry=registry, metrics=ProxyMetrics(registry, pool),
                       config_path=config_path)
    apart = settings.admin.listen is not None  # the control plane on its own address (proxy/control/listener.py)
    whole = [merged_metrics(role)] if role is not None else []  # /metrics: every process of this Warden
    middlewares = [exchange_middleware, route_guard(), control_plane_elsewhere] if apart else \
        [exchange_middleware, route_guard(), *whole]
    app = web.Application(middlewares=middlewares, client_max_size=settings.limits.max_body_bytes)
    app[STATE] = state
    if role is not None:
        app[WORKER] = role
    app.cleanup_ctx.extend(contexts(state, role))
    if settings.cache.enabled:
        app.on_response_prepare.append(add_cache_header)
    add_routes(app)
    if not apart:
        install_review(app)  # /review: the reviewer UI, when review is enabled
        add_admin_routes(app)
        return app
    admin = admin_app(state, [exchange_middleware, *whole])
    if role is not None:
        admin[WORKER] = role
        if role.index != 0:
            return app  # one admin listener per host: worker 0 serves it
    install_review(admin)
    if REVIEW in admin:
        app[REVIEW] = admin[REVIEW]  # the review context runs with this app and finds its holder here
    app[ADMIN_SITE] = site = AdminSite(admin)
    app.cleanup_ctx.append(site.ctx)  # after every wing: it starts last and stops first
    return app
