"""Command lines and config files for everything the bench runs: upstreams and proxies.

Each `start_*` returns the children it started; the caller owns stopping them. Config files go
to the run's temp dir, never next to the code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.harness import API_KEY, BENCH, FIXED_RESPONSE, MODEL, MODELS_RESPONSE, Child, bench_command

PY = sys.executable
WARDEN = str(Path(PY).parent / "warden")
NGINX = "/usr/sbin/nginx"
LITELLM_VERSION = "1.82.6"  # 1.82.7 and 1.82.8 were compromised on PyPI: never move to those.
LITELLM_VENV = BENCH / ".venv-litellm"


def _nginx_conf(tmp: Path, server_block: str, extra_http: str = "") -> str:
    """A self-contained nginx.conf: one worker, no access log, all paths inside `tmp`."""
    temp_paths = "\n".join(
        f"    {kind}_temp_path {tmp / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""\
worker_processes 1;
daemon off;
pid {tmp / "nginx.pid"};
error_log {tmp / "error.log"} warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
{temp_paths}
{extra_http}
    server {{
{server_block}
    }}
}}
"""


def _escape(text: str) -> str:
    """For a single-quoted nginx string: backslash-escape quotes; the bench bodies hold no `$`."""
    assert "$" not in text
    return text.replace("\\", "\\\\").replace("'", "\\'")


def start_nginx(name: str, conf: str, tmp: Path, cpus: str) -> Child:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "nginx.conf").write_text(conf)
    check = subprocess.run([NGINX, "-t", "-q", "-p", str(tmp), "-c", str(tmp / "nginx.conf")],
                           capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise RuntimeError(f"nginx config for {name} rejected:\n{check.stderr}")
    return Child(name, [NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf")], cpus, tmp.parent)


def start_fixed_upstream(port: int, tmp: Path, cpus: str) -> Child:
    """nginx answering every request with the fixed chat completion (and /v1/models for probes)."""
    server = f"""\
        listen 127.0.0.1:{port} backlog=4096;
        default_type application/json;
        location = /v1/models {{ return 200 '{_escape(MODELS_RESPONSE)}'; }}
        location / {{ return 200 '{_escape(FIXED_RESPONSE)}'; }}"""
    return start_nginx("upstream-nginx", _nginx_conf(tmp, server), tmp, cpus)


def start_nginx_proxy(port: int, upstream_port: int, tmp: Path, cpus: str) -> Child:
    """nginx as a reverse proxy with upstream keep-alive and no response buffering (SSE passes through)."""
    upstream = f"""\
    upstream bench_upstream {{
        server 127.0.0.1:{upstream_port};
        keepalive 128;
        keepalive_requests 1000000;
    }}"""
    server = f"""\
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}"""
    return start_nginx("nginx-proxy", _nginx_conf(tmp, server, upstream), tmp, cpus)


def start_upstream_sse(port: int, log_dir: Path, cpus: str) -> Child:
    return Child("upstream-sse", bench_command("upstream_sse", "--port", str(port)), cpus, log_dir)


def start_warden(name: str, port: int, upstream: str, log_dir: Path, cpus: str, *, uvloop: bool = True,
                 processes: int = 1, telemetry: bool = True, workers: int | None = None) -> list[Child]:
    """Warden as a user runs it, defaults and all; uvloop off needs a config file (no flag for it).

    Each process runs in its own empty working directory: Warden keeps state under relative
    paths (`.warden/...`) that must not land in the repo nor be shared by two processes.
    """
    if uvloop:
        args = ["--upstream", upstream, "--port", str(port)]
    else:
        config = log_dir / f"{name}.yaml"
        config.write_text(
            f"listen: {{host: 127.0.0.1, port: {port}}}\n"
            f"upstreams: [{{name: default, models: ['*'], backends: [{{url: '{upstream}'}}]}}]\n"
            "server: {uvloop: false}\n"
        )
        args = ["--config", str(config)]
    if processes > 1:
        args.append("--reuse-port")
    if workers is not None:  # one supervised Warden: its workers, telemetry process and supervisor in one group
        args += ["--workers", str(workers)]
    children = []
    for i in range(processes):
        child_name = f"{name}-{i}" if processes > 1 else name
        workdir = log_dir / f"{child_name}-{port}.cwd"
        workdir.mkdir(parents=True, exist_ok=True)
        env = None if telemetry else {"WARDEN_TELEMETRY__ENABLED": "false"}
        children.append(Child(child_name, [WARDEN, "--log-level", "warning", "serve", *args], cpus, log_dir,
                              env=env, cwd=workdir))
    return children


def start_relay(name: str, port: int, upstream: str, log_dir: Path, cpus: str, *, uvloop: bool,
                client: str = "aiohttp") -> Child:
    argv = bench_command("minimal_relay", "--upstream", upstream, "--port", str(port), "--client", client)
    return Child(name, [*argv, "--uvloop"] if uvloop else argv, cpus, log_dir)


def litellm_status(install: bool) -> tuple[Path | None, str]:
    """The `litellm` executable of the pinned venv, creating it first if asked; else why not."""
    exe = LITELLM_VENV / "bin" / "litellm"
    python = LITELLM_VENV / "bin" / "python"
    if not exe.exists():
        if not install:
            return None, f"{LITELLM_VENV} is missing and --no-litellm-install was given"
        print(f"# creating {LITELLM_VENV} with litellm[proxy]=={LITELLM_VERSION} (a few minutes, once)", flush=True)
        LITELLM_VENV.mkdir(parents=True, exist_ok=True)
        log = LITELLM_VENV / "bench-install.log"  # inside the venv: nothing new to gitignore
        steps = [[PY, "-m", "venv", str(LITELLM_VENV)],
                 [str(python), "-m", "pip", "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"]]
        with log.open("w") as out:
            for step in steps:
                if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, check=False).returncode != 0:
                    return None, f"installing LiteLLM failed; see {log}"
    probe = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                           capture_output=True, text=True, check=False)
    version = probe.stdout.strip()
    if version != LITELLM_VERSION:
        return None, f"{LITELLM_VENV} holds litellm {version or '(none)'}, not the pinned {LITELLM_VERSION}; not run"
    return exe, f"litellm {version}"


def start_litellm(exe: Path, port: int, upstream: str, log_dir: Path, cpus: str) -> Child:
    """One uvicorn worker, offline cost map, no telemetry, one model entry on the upstream."""
    config = log_dir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {upstream}/v1\n"
        f"      api_key: {API_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  drop_params: true\n"
    )
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "NO_DOCS": "True",
           "PATH": f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    argv = [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
            "--num_workers", "1", "--telemetry", "False"]
    return Child("litellm", argv, cpus, log_dir, env=env)
