"""Graceful shutdown: in-flight streams finish, new connections are refused; the heap settles after startup."""

from __future__ import annotations

import asyncio
import gc

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from proxy.server import serve, settle_heap, start_runner
from proxy.settings import build_settings
from tests.proxy.conftest import UpstreamFactory, proxy_config

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}


async def test_shutdown_lets_a_stream_finish_and_refuses_new_connections(make_upstream: UpstreamFactory) -> None:
    up = await make_upstream()
    up.script.stream_chunks = 8
    up.script.chunk_delay_s = 0.1
    runner, url = await start_runner(build_settings(proxy_config([up.url])), CollectorRegistry())
    async with aiohttp.ClientSession() as http:
        resp = await http.post(url + "/v1/chat/completions", json=CHAT)
        first = await resp.content.readline()
        assert first.startswith(b"data: ")
        closing = asyncio.create_task(runner.cleanup())
        await asyncio.sleep(0.05)
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as fresh:
                await fresh.get(url + "/healthz")
        rest = await resp.content.read()
        await closing
    assert rest.rstrip().endswith(b"data: [DONE]")
    assert up.completed_streams == 1


async def test_serve_announces_its_url_and_stops_on_the_event(make_upstream: UpstreamFactory) -> None:
    up = await make_upstream()
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(build_settings(proxy_config([up.url])), stop=stop, on_ready=ready.set_result))
    url = await asyncio.wait_for(ready, 5)
    async with aiohttp.ClientSession() as http, http.get(url + "/readyz") as resp:
        assert resp.status == 200
        assert (await resp.json()) == {"status": "ready", "healthy_backends": {"main": 1}}
    stop.set()
    await asyncio.wait_for(task, 5)


def test_settling_the_heap_freezes_startup_objects_and_slows_young_collections() -> None:
    threshold = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 10_000  # the test process's modules at least
        assert gc.get_threshold()[0] == 5000
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
