"""Run the offline llama.cpp model server (``proxy.localmodel``) for tests.

The server runs as a *subprocess* rather than in-process so that tests can
SIGKILL it to simulate an upstream crash, so that llama.cpp's native threads
and logs stay out of the pytest process, and so that a hung model can always
be reaped.  Its stdout/stderr go to a log file (never a pipe: a pipe nobody
drains eventually blocks the server) whose tail is quoted in startup errors.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from proxy.localmodel import ensure_tiny_gguf

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_FILENAME = "tiny-llama.gguf"


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class LlamaProcess:
    """A running ``python -m proxy.localmodel`` child process."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    alias: str
    model_path: Path
    log_path: Path

    @property
    def url(self) -> str:
        """Base URL without ``/v1``, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    def stderr_tail(self, lines: int = 30) -> str:
        """Last ``lines`` lines of the server's combined stdout/stderr log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful shutdown: SIGTERM, wait, then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc.wait()

    def kill(self) -> None:
        """Abrupt death (SIGKILL) for fault-injection tests; reaps the child."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=0.5) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _spawn(tmp_dir: Path, model: Path, host: str, port: int, alias: str, args: list[str]) -> LlamaProcess:
    log_path = tmp_dir / f"llama-{port}.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "proxy.localmodel", "--host", host]
    cmd += ["--port", str(port), "--model", str(model), "--alias", alias, *args]
    with log_path.open("wb") as log:  # the child keeps its own copy of the fd
        proc = subprocess.Popen(cmd, cwd=tmp_dir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    atexit.register(proc.kill)  # a test that forgets stop() must not leak a server (no-op once reaped)
    return LlamaProcess(proc, host, port, alias, model, log_path)


def start_llama_server(
    tmp_dir: Path,
    *,
    port: int | None = None,
    alias: str = "tiny-llama",
    host: str = "127.0.0.1",
    timeout: float = 30.0,
    extra_args: tuple[str, ...] = (),
) -> LlamaProcess:
    """Start the tiny model server and return once ``/health`` answers 200.

    The GGUF is written into ``tmp_dir`` on first use and reused afterwards.
    With ``port=None`` a free port is picked, and re-picked (up to 3 tries) if
    another process grabs it before the server binds.  ``extra_args`` go to
    the CLI verbatim, e.g. ``("--parallel", "8", "--quiet")``.  Raises
    ``RuntimeError`` with the server's log tail if it exits or stays unhealthy.
    """
    tmp_dir = Path(tmp_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    model = ensure_tiny_gguf(tmp_dir / MODEL_FILENAME)
    attempts = 3 if port is None else 1
    for attempt in range(1, attempts + 1):
        chosen = port if port is not None else free_port(host)
        server = _spawn(tmp_dir, model, host, chosen, alias, list(extra_args))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _healthy(server.url):
                return server
            if server.proc.poll() is not None:
                break
            time.sleep(0.02)
        exit_code = server.proc.poll()
        tail = server.stderr_tail()
        server.kill()
        if exit_code is not None and "couldn't bind" in tail and attempt < attempts:
            continue  # someone took the port between free_port() and bind()
        state = f"exited with code {exit_code}" if exit_code is not None else f"was not healthy within {timeout:g}s"
        raise RuntimeError(f"llama server on {server.url} {state}; log tail:\n{tail}")
    raise AssertionError("unreachable")
