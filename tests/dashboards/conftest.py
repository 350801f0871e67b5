"""Fixtures: the tools the checks need (Debian's prometheus, npm's tsc), and one observed Warden.

A missing tool skips its tests on a developer machine, with the command that installs it; in
CI (`CI` set) it fails them, so a dashboard check can never silently stop running.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from tests.dashboards.queries import DASHBOARDS, RULES
from tests.dashboards.stack import Stack

TSC = DASHBOARDS / ".tsc" / "node_modules" / "typescript" / "bin" / "tsc"


def require(path: str | None, what: str, install: str) -> str:
    if path is None or not Path(path).exists():
        message = f"{what} is missing: {install} (make test does this)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return require(shutil.which("promtool"), "promtool", "apt-get install prometheus")


@pytest.fixture(scope="session")
def tsc() -> list[str]:
    node = require(shutil.which("node"), "node", "apt-get install nodejs npm")
    return [node, require(str(TSC), "typescript", "npm ci --prefix dashboards/.tsc")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


@dataclass
class Observed:
    prometheus: str  # base URL of the Prometheus that scraped Warden
    start: float  # traffic began (unix seconds)
    at: float  # evaluation time: after the traffic and a few more scrapes
    database: str  # the chDB database Warden's telemetry went to
    chdb: Client


@pytest.fixture(scope="session")
def observed(tmp_path_factory: pytest.TempPathFactory, chdb_dir: str, chdb_client: Client, classifier_dir: Path,
             embedder_dir: Path) -> Iterator[Observed]:
    """Warden with every feature on, scraped each second by a real Prometheus while traffic runs."""
    binary = require(shutil.which("prometheus"), "prometheus", "apt-get install prometheus")
    tmp = tmp_path_factory.mktemp("observed")
    database = f"dash_{uuid.uuid4().hex[:8]}"
    stack = Stack()
    proc: subprocess.Popen[bytes] | None = None
    try:
        stack.run(stack.start(tmp, chdb_dir, database, classifier_dir, embedder_dir))
        port = free_port()
        target = stack.url.removeprefix("http://")
        (tmp / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: ['{RULES}']\n"
            f"scrape_configs: [{{job_name: warden, static_configs: [{{targets: ['{target}']}}]}}]\n")
        log = (tmp / "prometheus.log").open("wb")
        args = [f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}"]
        proc = subprocess.Popen([binary, *args], stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/-/ready")
        start = time.time()
        stack.run(stack.drive())
        deadline = time.monotonic() + 60  # drift windows are computed off the request path
        while not _count(chdb_client, database, "drift_windows") and time.monotonic() < deadline:
            time.sleep(0.25)
        time.sleep(3)  # three more scrapes: the last counters and the review snapshot are in
        yield Observed(base, start, time.time(), database, chdb_client)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        stack.run(stack.stop())
        stack.loop.call_soon_threadsafe(stack.loop.stop)
        stack.thread.join(10)
        chdb_client.command(f"DROP DATABASE IF EXISTS `{database}` SYNC")


def _count(client: Client, database: str, table: str) -> int:
    try:
        return int(client.command(f"SELECT count() FROM `{database}`.`{table}`"))  # type: ignore[arg-type]
    except Exception:  # the table appears with the writer's first migration
        return 0
