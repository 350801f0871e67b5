"""Config reload while traffic flows: good reloads apply between requests, bad ones change nothing."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client import CollectorRegistry

from proxy.server import start_runner
from proxy.settings import load_settings
from tests.proxy.conftest import UpstreamFactory
from tests.proxy.governance.conftest import governed_config, make_key
from tests.reliability.conftest import Record

ADMIN = "reload-admin-token-0123456789"
CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}


async def test_reloads_under_load_fail_no_request(make_upstream: UpstreamFactory, http: aiohttp.ClientSession,
                                                  tmp_path: Path, measured: Record) -> None:
    up = await make_upstream()
    up.script.stream_chunks, up.script.chunk_delay_s = 4, 0.01
    key = make_key("acme")
    base = governed_config([up.url], [key], {"acme": {"requests_per_minute": 100_000}},
                           admin_token_sha256=[hashlib.sha256(ADMIN.encode()).hexdigest()])
    variants: list[dict[str, Any]] = [
        {**base, "governance": {**base["governance"], "tenants": {"acme": {"requests_per_minute": 200_000}}}},
        {**base, "policy": {"rules": []}},
        {**base, "timeouts": {"read_s": -1}},  # invalid: rejected, the running config stays
    ]
    path = tmp_path / "warden.yaml"
    path.write_text(yaml.safe_dump(base))
    runner, url = await start_runner(load_settings(path), CollectorRegistry(), config_path=path)
    statuses: list[int] = []
    stop = asyncio.Event()

    async def client() -> None:
        while not stop.is_set():
            body = {**CHAT, "stream": len(statuses) % 3 == 0}
            async with http.post(url + "/v1/chat/completions", json=body, headers=key.headers) as resp:
                await resp.read()
                statuses.append(resp.status)

    try:
        clients = [asyncio.create_task(client()) for _ in range(8)]
        reload_ms, outcomes = [], []
        for i in range(15):
            path.write_text(yaml.safe_dump(variants[i % 3]))
            started = time.monotonic()
            async with http.post(url + "/admin/reload", headers={"Authorization": "Bearer " + ADMIN}) as resp:
                outcomes.append((resp.status, (await resp.json())["ok"]))
            reload_ms.append((time.monotonic() - started) * 1000)
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*clients)
    finally:
        await runner.cleanup()
    assert outcomes == [(200, True), (200, True), (400, False)] * 5
    assert len(statuses) > 100 and set(statuses) == {200}
    measured["config reload under load (8 clients)"] = (
        f"{len(statuses)} requests, 0 failed; 15 reloads (5 rejected), {max(reload_ms):.0f} ms at most")
