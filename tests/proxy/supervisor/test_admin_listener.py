"""`admin.listen` under `warden serve --workers N`: the supervisor holds the admin socket, worker 0 serves it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.proxy.supervisor.warden import eventually, kill, status, supervised
from tests.support.llama import free_port

ADMIN = "admin-token-" + "3" * 20


def _admin(url: str, method: str = "GET", path: str = "/admin/abuse", timeout: float = 10) -> tuple[int, Any]:
    req = urllib.request.Request(url + path, method=method, headers={"Authorization": "Bearer " + ADMIN})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


async def test_the_admin_port_outlives_worker_0_and_a_reload_there_reaches_every_worker(tmp_path: Path) -> None:
    port = free_port()
    admin_url = f"http://127.0.0.1:{port}"
    config = {"telemetry": {"enabled": False}, "admin": {"listen": f"127.0.0.1:{port}"},
              "governance": {"admin_token_sha256": [hashlib.sha256(ADMIN.encode()).hexdigest()]}}
    with supervised(tmp_path, config) as (warden, _):
        assert await asyncio.to_thread(_admin, admin_url) == (200, {"data": []})
        assert (await asyncio.to_thread(_admin, warden.url))[0] == 404  # not on the API port
        before = status(admin_url)["processes"]["pids"]["workers"]

        kill(before[0])  # the worker that serves the admin port
        # the port stays open in the supervisor: this call waits in its backlog for worker 0's restart
        assert await asyncio.to_thread(_admin, admin_url, timeout=30) == (200, {"data": []})
        after = status(admin_url)["processes"]["pids"]["workers"]
        assert after[0] != before[0] and after[1] == before[1]

        code, body = await asyncio.to_thread(_admin, admin_url, "POST", "/admin/reload")
        assert code == 200 and body["ok"]
        # worker 0 reloaded for the call, and the supervisor had worker 1 reload the same file
        await asyncio.to_thread(eventually, lambda: warden.log().count("config reloaded") == 2, 15)
    assert "reloading the others" in warden.log()
