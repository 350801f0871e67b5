"""An https backend behind `warden serve`: trusted through SSL_CERT_FILE, as docs/architecture.md says.

A real process, because both clients (the relay's and aiohttp's for health probes) build their
trust store when they start, from the environment the process was given.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from tests.proxy.conftest import proxy_config
from tests.support.fake_upstream import FakeUpstream
from tests.support.procs import start_warden
from tests.support.tls import self_signed, server_context


async def _ready(http: aiohttp.ClientSession, url: str, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        async with http.get(url + "/readyz") as resp:
            if resp.status == 200:
                return
            body = await resp.text()
        assert asyncio.get_running_loop().time() < deadline, f"never ready: {body}"
        await asyncio.sleep(0.1)


async def test_an_https_backend_trusted_by_ssl_cert_file_is_probed_and_relayed(tmp_path: Path) -> None:
    cert = self_signed(tmp_path)
    up = await FakeUpstream("tls").start(tls=server_context(cert))
    assert up.url.startswith("https://")
    warden = await asyncio.to_thread(start_warden, tmp_path, proxy_config([up.url]), env={"SSL_CERT_FILE": str(cert)})
    try:
        async with aiohttp.ClientSession() as http:
            await _ready(http, warden.url)
            await asyncio.sleep(1.0)  # five probe intervals: an untrusted backend is unready after two
            async with http.get(warden.url + "/readyz") as resp:
                assert resp.status == 200, await resp.text()  # the probes' handshakes verified the certificate
            chat = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
            async with http.post(warden.url + "/v1/chat/completions", json=chat) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["choices"][0]["message"]["content"] == "hello"
            async with http.post(warden.url + "/v1/chat/completions", json={**chat, "stream": True}) as resp:
                assert resp.status == 200
                events = [line for line in (await resp.text()).splitlines() if line.startswith("data: ")]
            assert events[-1] == "data: [DONE]"
            assert json.loads(events[0][6:])["choices"][0]["delta"]
        assert len(up.requests) == 2
    finally:
        await asyncio.to_thread(warden.stop)
        await up.stop()
