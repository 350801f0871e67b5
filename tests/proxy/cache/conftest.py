"""A proxy with the cache on, and a test-only way to say which tenant is asking.

Governance will set `exchange.tenant` from the API key; until then (and so that these tests do
not depend on it) a middleware added here, and only here, reads the tenant from a test header.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy.app.factory import create_app
from proxy.settings import build_settings
from proxy.state import EXCHANGE
from tests.proxy.conftest import RunningProxy, proxy_config
from tests.support.fake_upstream import FakeUpstream

TENANT = "X-Test-Tenant"


@web.middleware
async def tenant_from_test_header(request: web.Request,
                                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                                  ) -> web.StreamResponse:
    tenant = request.headers.get(TENANT)
    if tenant:
        request[EXCHANGE].tenant = tenant
    return await handler(request)


def cache_config(upstream_url: str, **cache: Any) -> dict[str, Any]:
    config = proxy_config([upstream_url])
    config["cache"] = {"enabled": True, **cache}
    return config


class GatedUpstream(FakeUpstream):
    """Holds every chat request until the test opens the gate: coalescing tests wait for all followers first."""

    def __init__(self) -> None:
        super().__init__("gated")
        self.gate = asyncio.Event()
        self.waiting = 0

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.waiting += 1
        await self.gate.wait()
        return await super()._chat(request)


async def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


CachedProxyFactory = Callable[[dict[str, Any]], Awaitable[RunningProxy]]


@pytest.fixture
async def make_cached_proxy() -> AsyncIterator[CachedProxyFactory]:
    async with AsyncExitStack() as stack:

        async def make(config: dict[str, Any]) -> RunningProxy:
            registry = CollectorRegistry()
            app = create_app(build_settings(config), registry)
            app.middlewares.append(tenant_from_test_header)  # inside the exchange middleware
            runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=5)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            return RunningProxy(runner, f"http://{host}:{port}", registry)

        yield make


@pytest.fixture
async def gated_upstream() -> AsyncIterator[GatedUpstream]:
    upstream = await GatedUpstream().start()
    try:
        yield upstream
    finally:
        upstream.gate.set()
        await upstream.stop()
