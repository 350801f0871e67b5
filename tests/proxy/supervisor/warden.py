"""`warden serve --workers N` as a real process tree, for the supervisor, telemetry and limits tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.support.llama import free_port
from tests.support.procs import Child, _spawn, start_fault_upstream

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def start_supervised(cwd: Path, config: dict[str, Any], workers: int = 2, timeout: float = 90.0,
                     flags: tuple[str, ...] = ()) -> Child:
    """Ready when /readyz says every process is up."""
    port = free_port()
    (cwd / "warden.yaml").write_text(yaml.safe_dump({**config, "listen": {"host": "127.0.0.1", "port": port}}))
    cmd = [sys.executable, "-m", "proxy.cli", "serve", "--config", "warden.yaml", "--workers", str(workers), *flags]
    return _spawn(cmd, cwd, "warden", "/readyz", f"http://127.0.0.1:{port}", timeout)


@contextmanager
def supervised(cwd: Path, extra: dict[str, Any] | None = None, workers: int = 2,
               flags: tuple[str, ...] = ()) -> Iterator[tuple[Child, Child]]:
    """A fault upstream and a supervised Warden in front of it; both stopped at the end."""
    upstream = start_fault_upstream(cwd)
    config = {"upstreams": [{"name": "main", "models": ["*"], "backends": [{"url": upstream.url}]}], **(extra or {})}
    try:
        warden = start_supervised(cwd, config, workers, flags=flags)
    except BaseException:
        upstream.kill()
        raise
    try:
        yield warden, upstream
    finally:
        warden.stop(60)
        upstream.kill()


def status(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/readyz", timeout=5) as resp:
        body: dict[str, Any] = json.loads(resp.read())
    return body


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "))


def eventually(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.1)


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


async def load(url: str, stop: asyncio.Event, connections: int = 8, body: dict[str, Any] | None = None
               ) -> tuple[list[str], int]:
    """Requests on `connections` keep-alive connections until `stop`: the request ids answered 200, and failures."""
    answered: list[str] = []
    failed = 0

    async def one_connection() -> None:
        nonlocal failed
        while not stop.is_set():
            try:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                    while not stop.is_set():
                        async with http.post(url + "/v1/chat/completions", json=body or CHAT) as resp:
                            await resp.read()
                            if resp.status == 200:
                                answered.append(resp.headers["X-Request-Id"])
                            else:
                                failed += 1
            except (TimeoutError, aiohttp.ClientError):
                failed += 1  # the connection's worker was killed: a new connection goes elsewhere

    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return answered, failed
