"""Managed replicas that are real llama.cpp servers (`warden local-model`, a tiny generated GGUF).

One proxy with two replicas serves the whole module (starting servers is the slow part on two
cores); the tests run in file order and the last one shuts it down.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from proxy.localmodel import ensure_tiny_gguf
from proxy.server import start_runner
from proxy.settings import build_settings
from tests.proxy.codeploy.procs import alive_in_groups, wait_gone
from tests.proxy.conftest import RunningProxy
from tests.support.llama import REPO_ROOT

pytestmark = pytest.mark.asyncio(loop_scope="module")
MODEL = "tiny-llama"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}


@dataclass
class Managed:
    proxy: RunningProxy
    lines: list[str] = field(default_factory=list)
    stopped: bool = False

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            await self.proxy.runner.cleanup()


class _Lines(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.INFO)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def managed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Managed]:
    model = ensure_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")
    command = [sys.executable, "-m", "proxy.cli", "local-model", "--port", "{port}", "--model", str(model),
               "--alias", MODEL, "--quiet", "--metrics", "--parallel", "4"]
    config = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "upstreams": [{
            "name": "llama", "models": [MODEL], "balancer": "least_loaded",
            "load": {"interval_s": 0.3},
            "health": {"path": "/health", "interval_s": 0.3, "timeout_s": 1, "eject_base_s": 0.2, "eject_max_s": 1},
            "managed": {"command": command, "replicas": 2, "env": {"PYTHONPATH": str(REPO_ROOT)},
                        "start_timeout_s": 60, "stop_grace_s": 5, "restart_backoff_s": 0.2},
        }],
        "server": {"shutdown_grace_s": 5, "uvloop": False},
        "telemetry": {"enabled": False},
    }
    lines: list[str] = []
    handler = _Lines(lines)
    logger = logging.getLogger("warden.codeploy")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    registry = CollectorRegistry()
    runner, url = await start_runner(build_settings(config), registry)
    holder = Managed(RunningProxy(runner, url, registry), lines)
    try:
        yield holder
    finally:
        await holder.stop()
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_two_replicas_start_and_serve(managed: Managed) -> None:
    manager = managed.proxy.state.managed
    assert manager is not None and len(manager.replicas) == 2
    started = time.monotonic()
    assert await manager.wait_ready(60), manager.describe()
    print(f"\ntwo replicas ready {time.monotonic() - started:.1f}s after the proxy started")
    async with aiohttp.ClientSession() as http:
        async with http.get(managed.proxy.url + "/readyz") as resp:
            body = await resp.json()
            assert resp.status == 200, body
        assert [r["state"] for r in body["managed"]["llama"]] == ["ready", "ready"]
        for _ in range(6):
            async with http.post(managed.proxy.url + "/v1/chat/completions", json=CHAT) as resp:
                assert resp.status == 200
                assert (await resp.json())["choices"][0]["message"]["content"]
    served = [managed.proxy.metric("warden_upstream_responses_total",
                                   {"group": "llama", "backend": r.backend.url, "code": "200", "status": "200"})
              for r in manager.replicas]
    assert sum(served) == 6
    # The servers' own log lines come through Warden's logging, named by replica.
    assert any(line.startswith("[llama/0] ") and "listening on" in line for line in managed.lines)
    assert managed.proxy.metric("warden_managed_replica_state", {"group": "llama", "replica": "1",
                                                                  "state": "ready"}) == 1


async def test_llama_metrics_feed_the_load_score(managed: Managed) -> None:
    state = managed.proxy.state
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        text = "\n".join(f"{k} {v}" for k, v in _samples(state.registry, "warden_upstream_queue_pressure"))
        if text:
            break
        await asyncio.sleep(0.1)
    assert text, "no queue pressure gauge"
    async with aiohttp.ClientSession() as http:
        assert state.managed is not None
        async with http.get(state.managed.replicas[0].backend.url + "/metrics") as resp:
            assert "llamacpp:requests_processing" in await resp.text()


def _samples(registry: CollectorRegistry, name: str) -> list[tuple[str, float]]:
    return [(str(s.labels), s.value) for m in registry.collect() for s in m.samples if s.name == name]


async def test_killed_replica_restarts_while_traffic_continues(managed: Managed) -> None:
    manager = managed.proxy.state.managed
    assert manager is not None and await manager.wait_ready(60)
    victim = manager.replicas[0]
    pid = victim.pid
    assert pid is not None
    statuses: list[int] = []
    done = asyncio.Event()

    async def client(http: aiohttp.ClientSession) -> None:
        while not done.is_set():
            try:
                async with http.post(managed.proxy.url + "/v1/chat/completions", json=CHAT) as resp:
                    await resp.read()
                    statuses.append(resp.status)
            except aiohttp.ClientError:
                statuses.append(-1)

    async with aiohttp.ClientSession() as http:
        workers = [asyncio.create_task(client(http)) for _ in range(4)]
        await asyncio.sleep(0.5)
        before = len(statuses)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        while victim.restarts == 0 or victim.state != "ready":
            assert time.monotonic() - killed_at < 60, victim.describe()
            await asyncio.sleep(0.05)
        restart_s = time.monotonic() - killed_at
        await asyncio.sleep(0.5)
        done.set()
        await asyncio.gather(*workers)
    failed = [s for s in statuses if s != 200]
    print(f"\nkill -9 of replica 0: back in {restart_s:.2f}s; {len(statuses)} requests "
          f"({len(statuses) - before} after the kill), {len(failed)} failed")
    assert not failed, f"{len(failed)} failed requests: {sorted(set(failed))}"
    assert victim.pid not in (None, pid) and victim.restarts == 1
    assert managed.proxy.metric("warden_managed_replica_restarts_total", {"group": "llama", "replica": "0"}) == 1


async def test_shutdown_leaves_no_child_process(managed: Managed) -> None:
    manager = managed.proxy.state.managed
    assert manager is not None
    groups = {r.pid for r in manager.replicas if r.pid is not None}
    assert len(groups) == 2 and alive_in_groups(groups)
    started = time.monotonic()
    await managed.stop()
    print(f"\nshutdown with two replicas: {time.monotonic() - started:.2f}s")
    assert wait_gone(groups) == []
    assert all(r.state == "stopped" and r.pid is None for r in manager.replicas)
    assert Path("/proc").is_dir()
