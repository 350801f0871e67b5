"""Real child processes for fault injection: the misbehaving upstream and `warden serve` itself.

Both log to a file (a pipe nobody drains would block them) and are reaped at exit even when a
test forgets; `kill()` is a SIGKILL, the crash the reliability suite needs to show.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.llama import REPO_ROOT, free_port


@dataclass
class Child:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.wait()


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _spawn(cmd: list[str], cwd: Path, name: str, probe: str, url: str, timeout: float,
           env: dict[str, str] | None = None) -> Child:
    log_path = cwd / f"{name}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=_env(env), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    atexit.register(proc.kill)
    child = Child(proc, url, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _answers(url + probe):
            return child
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    child.kill()
    raise RuntimeError(f"{name} did not come up on {url}; log:\n{child.log()[-3000:]}")


def start_fault_upstream(cwd: Path, port: int | None = None, timeout: float = 20.0) -> Child:
    port = port or free_port()
    cmd = [sys.executable, "-m", "tests.support.fault_upstream", "--port", str(port)]
    return _spawn(cmd, cwd, f"upstream-{port}", "/v1/models", f"http://127.0.0.1:{port}", timeout)


def start_warden(cwd: Path, config: dict[str, Any], timeout: float = 60.0, log_level: str = "info",
                 env: dict[str, str] | None = None) -> Child:
    """`warden serve --config` in `cwd` (its embedded store and spool live there), ready at /healthz."""
    port = free_port()
    config = {**config, "listen": {"host": "127.0.0.1", "port": port}}
    path = cwd / "warden.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "proxy.cli", "--log-level", log_level, "serve", "--config", str(path)]
    return _spawn(cmd, cwd, "warden", "/healthz", f"http://127.0.0.1:{port}", timeout, env)


def fds_and_rss(pid: int) -> tuple[int, int]:
    """Open file descriptors and resident bytes of a process, from /proc (psutil when installed)."""
    try:
        import psutil

        proc = psutil.Process(pid)
        return proc.num_fds(), int(proc.memory_info().rss)
    except ImportError:
        pass
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/status") as status:
        rss = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))
    return fds, rss
