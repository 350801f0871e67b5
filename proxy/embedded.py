"""`warden up` (what `make run` starts): the proxy in front of a local llama.cpp server it launches.

The model server runs as a child process with a tiny generated model, so the whole path
(client → Warden → model server) works offline on a laptop with nothing configured.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from proxy.localmodel import DEFAULT_ALIAS, ensure_tiny_gguf
from proxy.server import run
from proxy.settings import settings_for_upstreams

log = logging.getLogger("warden.embedded")
START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the local model server exited with {proc.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the local model server did not answer {url}/health within {START_TIMEOUT_S:g}s")


def banner(proxy_url: str, model_url: str, log_path: Path) -> str:
    return f"""
Warden is up.
  OpenAI base URL   {proxy_url}/v1        (model "{DEFAULT_ALIAS}")
  health, ready     {proxy_url}/healthz   {proxy_url}/readyz
  metrics           {proxy_url}/metrics
  model server      {model_url}  (llama.cpp, tiny random model; log: {log_path})
Try:
  curl -s {proxy_url}/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{{"model": "{DEFAULT_ALIAS}", "messages": [{{"role": "user", "content": "hello"}}], "max_tokens": 16}}'
Stop with Ctrl-C.
"""


def run_embedded(port: int, host: str, state_dir: Path) -> int:
    model = ensure_tiny_gguf(state_dir / "models" / "tiny-llama.gguf")
    model_port = _free_port()
    model_url = f"http://127.0.0.1:{model_port}"
    log_path = state_dir / "logs" / "model-server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as model_log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy.localmodel", "--port", str(model_port), "--model", str(model), "--quiet"],
            stdout=model_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        _wait_healthy(model_url, proc, log_path)
        log.info("local model server ready at %s (pid %d)", model_url, proc.pid)
        settings = settings_for_upstreams([model_url], port=port, host=host)
        run(settings, on_ready=lambda url: print(banner(url, model_url, log_path), flush=True))
        return 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.info("local model server stopped")
