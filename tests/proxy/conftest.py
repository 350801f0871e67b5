"""Fixtures: scripted upstreams and a Warden proxy served on a real socket in the test's loop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy.server import start_runner
from proxy.settings import build_settings
from proxy.state import STATE, ProxyState
from tests.support.fake_upstream import FakeUpstream
from tests.support.redis import redis_server


class RunningProxy:
    def __init__(self, runner: web.AppRunner, url: str, registry: CollectorRegistry) -> None:
        self.runner = runner
        self.url = url
        self.registry = registry

    @property
    def state(self) -> ProxyState:
        app = self.runner.app
        assert isinstance(app, web.Application)
        return app[STATE]

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value


def proxy_config(backends: list[str], **group: Any) -> dict[str, Any]:
    """A one-group config with fast health probes, so tests see recovery in well under a second."""
    health = {"interval_s": 0.2, "timeout_s": 0.5, "eject_base_s": 0.2, "eject_max_s": 1.0}
    health.update(group.pop("health", {}))
    return {
        "listen": {"host": "127.0.0.1", "port": 0},
        "upstreams": [{"name": "main", "backends": [{"url": u} for u in backends], "health": health, **group}],
        "server": {"shutdown_grace_s": 5, "uvloop": False},
        "telemetry": {"enabled": False},  # tests/proxy/telemetry turns it on, on the session's chDB directory
    }


ProxyFactory = Callable[..., Awaitable[RunningProxy]]
UpstreamFactory = Callable[..., Awaitable[FakeUpstream]]


@pytest.fixture
async def make_upstream() -> AsyncIterator[UpstreamFactory]:
    async with AsyncExitStack() as stack:

        async def make(name: str = "fake") -> FakeUpstream:
            upstream = await FakeUpstream(name).start()
            stack.push_async_callback(upstream.stop)
            return upstream

        yield make


@pytest.fixture
async def make_proxy() -> AsyncIterator[ProxyFactory]:
    async with AsyncExitStack() as stack:

        async def make(config: dict[str, Any]) -> RunningProxy:
            registry = CollectorRegistry()
            runner, url = await start_runner(build_settings(config), registry)
            stack.push_async_callback(runner.cleanup)
            return RunningProxy(runner, url, registry)

        yield make


# chdb_dir, chdb_client and db live in tests/conftest.py: every package that writes telemetry shares them.


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server for the session; each test uses its own key prefix or database."""
    with redis_server() as url:
        yield url
