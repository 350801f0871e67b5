"""The supervisor of `warden serve --workers N`: restarts, reload in every worker, graceful drain (real processes)."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
from pathlib import Path

import aiohttp

from tests.proxy.supervisor.warden import CHAT, eventually, kill, load, metric, status, supervised

QUIET = {"telemetry": {"enabled": False}}


def _fresh_connection_chat(url: str) -> int:
    req = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(CHAT).encode(),
                                 headers={"Content-Type": "application/json", "Connection": "close"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return int(resp.status)


async def test_a_killed_worker_is_restarted_counted_and_its_port_keeps_serving(tmp_path: Path) -> None:
    with supervised(tmp_path, QUIET) as (warden, _):
        before = status(warden.url)
        assert before["status"] == "ready"
        assert before["processes"]["workers_up"] == 2
        victim = before["processes"]["pids"]["workers"][0]
        stop = asyncio.Event()
        running = asyncio.create_task(load(warden.url, stop, connections=4))
        await asyncio.sleep(0.5)
        kill(victim)
        await asyncio.to_thread(eventually, lambda: status(warden.url)["processes"]["workers_up"] == 2)
        await asyncio.sleep(0.5)
        stop.set()
        answered, _ = await running
        after = status(warden.url)["processes"]["pids"]["workers"]
        assert victim not in after and after[1] == before["processes"]["pids"]["workers"][1]
        assert metric(warden.url, "warden_process_restarts_total") == 1
        assert metric(warden.url, "warden_workers_up") == 2
        assert len(answered) > 50
        for _ in range(20):  # both sockets answer again: nothing hashed to the new worker's queue waits
            assert await asyncio.to_thread(_fresh_connection_chat, warden.url) == 200
    assert "exited with -9; restart 1" in warden.log()


async def test_sighup_reloads_every_worker_and_sigterm_drains_what_is_in_flight(tmp_path: Path) -> None:
    with supervised(tmp_path, QUIET) as (warden, _):
        warden.proc.send_signal(signal.SIGHUP)
        await asyncio.to_thread(eventually, lambda: warden.log().count("config reloaded") == 2, 15)
        slow = {**CHAT, "stream": True, "n": 8, "gap_ms": 150}  # ~1.2 s of stream
        async with aiohttp.ClientSession() as http, http.post(warden.url + "/v1/chat/completions", json=slow) as resp:
            assert resp.status == 200
            first = await resp.content.readline()
            warden.proc.send_signal(signal.SIGTERM)  # mid-stream: the worker finishes it before it stops
            rest = await resp.content.read()
        assert first.startswith(b"data: ")
        assert rest.rstrip().endswith(b"data: [DONE]")
        assert await asyncio.to_thread(warden.proc.wait, 30) == 0
    assert "draining 2 workers" in warden.log()


def test_log_format_reaches_every_process(tmp_path: Path, classifier_dir: Path) -> None:
    """`--log-format json` on the command line: the supervisor, each worker (their access lines too),
    the telemetry process and the scanner all write one JSON object a line."""
    scanner = {"torch_threads": 1, "models": [{"task": "toxicity", "kind": "classifier", "path": str(classifier_dir),
                                               "device": "cpu"}]}
    with supervised(tmp_path, {"server": {"access_log": True}, "scanner": scanner},
                    flags=("--log-format", "json")) as (warden, _):
        for _ in range(4):  # fresh connections: both workers answer some
            assert _fresh_connection_chat(warden.url) == 200
    lines = [line for line in warden.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # a text line would not parse
    loggers = {r["logger"] for r in records}
    assert {"warden.supervisor", "warden.server", "warden.access", "warden.telemetry.process",
            "warden.scanner"} <= loggers
    assert sum(r["message"].startswith("Warden listening") and r["logger"] == "warden.server" for r in records) == 2
