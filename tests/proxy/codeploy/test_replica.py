"""The replica supervisor with a stand-in server: readiness, restart with back-off, and a stubborn stop."""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp

from proxy.codeploy.manager import CoDeploy
from proxy.codeploy.replica import render
from proxy.settings import build_settings
from proxy.upstream import UpstreamPool
from tests.proxy.codeploy.procs import wait_gone

# Ignores SIGTERM, forks a child that sleeps (as vLLM's workers would linger), serves /health after a delay.
STUBBORN = """
import http.server, os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.fork() == 0:
    time.sleep(600)
    os._exit(0)
print("loading", flush=True)
time.sleep(0.3)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
print("serving on", sys.argv[1], os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def test_render_fills_known_placeholders_only() -> None:
    values = {"port": "8001", "gpu": "2,3"}
    assert render("--port={port}", values) == "--port=8001"
    assert render('{"a": {port}}', values) == '{"a": 8001}'
    assert render("{other} {gpu}", values) == "{other} 2,3"


async def test_restart_then_stubborn_stop_kills_the_whole_group() -> None:
    settings = build_settings({"upstreams": [{
        "name": "m", "health": {"path": "/health"},
        "managed": {"command": [sys.executable, "-c", STUBBORN, "{port}"], "replicas": 2, "gpus": ["0", "1"],
                    "stop_grace_s": 0.3, "restart_backoff_s": 0.1, "start_timeout_s": 20},
    }], "telemetry": {"enabled": False}})
    pool = UpstreamPool.from_settings(settings.upstreams)
    manager = CoDeploy(pool)
    group = pool.groups[0]
    assert len(group.backends) == 2 and group.healthy_count == 0  # in the pool at once, out until ready
    await manager.start()
    try:
        assert await manager.wait_ready(20), manager.describe()
        assert group.healthy_count == 2
        first = manager.replicas[0]
        pid = first.pid
        assert pid is not None
        killed_at = time.monotonic()
        first._signal(first._proc, 9)  # type: ignore[arg-type]  # the process and the child it forked
        while first.restarts == 0 or first.state != "ready":
            assert time.monotonic() - killed_at < 20, first.describe()
            await asyncio.sleep(0.02)
        assert first.pid != pid and first.last_exit == -9
        async with aiohttp.ClientSession() as http, http.get(first.backend.url + "/health") as resp:
            assert resp.status == 200  # the same URL as before: the backend object stayed
    finally:
        groups = {r.pid for r in manager.replicas if r.pid is not None}
        started = time.monotonic()
        await manager.stop(drain_s=1.0)
    assert time.monotonic() - started < 3  # SIGTERM ignored: SIGKILL after the 0.3 s grace
    assert wait_gone(groups) == []
    assert all(r.state == "stopped" for r in manager.replicas) and group.healthy_count == 0
