"""The telemetry process of `warden serve --workers 2`: rows survive a worker's and its own kill -9,
exactly once, and `warden query` answers while Warden serves (real processes, embedded chDB)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from proxy.telemetry.commands import query_running
from tests.proxy.supervisor.warden import eventually, kill, load, status, supervised

FAST = {"telemetry": {"flush_interval_s": 0.2}}
ADMIN = "admin-token-for-query"


async def _rows(cwd: Path) -> list[str]:
    text = await query_running(cwd / ".warden" / "clickhouse.sock",
                               "SELECT request_id FROM requests WHERE route = '/v1/chat/completions'", "json")
    return [row["request_id"] for row in json.loads(text)]


async def _settled(cwd: Path, answered: list[str]) -> list[str]:
    """The stored ids once they stop changing (every hand-over, spool and replay done)."""
    last: list[str] = []
    for _ in range(150):
        rows = await _rows(cwd)
        if len(rows) >= len(answered) and rows == last:
            return rows
        last = rows
        await asyncio.sleep(0.2)
    return last


async def test_a_worker_killed_under_load_loses_no_row_it_handed_over(tmp_path: Path) -> None:
    with supervised(tmp_path, FAST) as (warden, _):
        victim = status(warden.url)["processes"]["pids"]["workers"][0]
        stop = asyncio.Event()
        running = asyncio.create_task(load(warden.url, stop))
        await asyncio.sleep(1.0)
        kill(victim)
        await asyncio.sleep(0.3)
        started = time.perf_counter()  # a query while Warden serves, through the telemetry process
        served = await _rows(tmp_path)
        query_s = time.perf_counter() - started
        await asyncio.sleep(1.0)
        stop.set()
        answered, failed = await running
        rows = await _settled(tmp_path, answered)
        print(f"\n{len(answered)} answered, {failed} cut by the kill, {len(rows)} rows, query {query_s * 1000:.0f} ms")
        assert served and query_s < 1.0
        assert len(rows) == len(set(rows)), "a row stored twice"
        missing = set(answered) - set(rows)
        # Rows leave a worker at the end of the loop turn that emitted them; an answer written in the
        # turn the kill lands in can be out before its row: at most one turn of rows, on one connection each.
        assert len(missing) <= 8, f"{len(missing)} answered requests have no row"


async def test_a_killed_telemetry_process_is_restarted_and_workers_replay_their_spools_once(tmp_path: Path) -> None:
    admin = {"governance": {"admin_token_sha256": [hashlib.sha256(ADMIN.encode()).hexdigest()]}}
    with supervised(tmp_path, {**FAST, **admin}) as (warden, _):
        tp = status(warden.url)["processes"]["pids"]["telemetry"]
        stop = asyncio.Event()
        running = asyncio.create_task(load(warden.url, stop, connections=4))
        await asyncio.sleep(1.0)
        kill(tp)
        await asyncio.sleep(1.5)  # the workers spool while it is away
        await asyncio.to_thread(eventually, lambda: status(warden.url)["processes"]["telemetry"] == "up")
        await asyncio.sleep(1.0)
        stop.set()
        answered, failed = await running
        rows = await _settled(tmp_path, answered)
        print(f"\n{len(answered)} answered, {len(rows)} rows")
        assert failed == 0  # serving never depended on the telemetry process
        assert len(rows) == len(set(rows)), "a row stored twice"
        assert set(rows) >= set(answered)
        # the CLI, while Warden runs: through the telemetry process, same table format as ever
        cli = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "proxy.cli", "query",
                                                       "SELECT count() AS n FROM requests WHERE route = "
                                                       "'/v1/chat/completions'"],
                                      cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        assert cli.stdout.splitlines()[:3] == ["n", "-" * max(1, len(str(len(rows)))), str(len(rows))]
        refused = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "proxy.cli", "query", "DROP TABLE x"],
                                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1 and "read-only" in refused.stderr
        async with aiohttp.ClientSession() as http, http.get(
                warden.url + "/admin/query", params={"sql": "SELECT count() AS n FROM requests WHERE route = "
                                                            "'/v1/chat/completions'"},
                headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
            assert resp.status == 200 and await resp.json() == [{"n": len(rows)}]
    assert "telemetry process (pid" in warden.log() and "restart 1" in warden.log()
