"""The harness every bench shares: payloads, ports, child processes, readiness, rounds, percentiles.

Every server a bench starts is a child in its own session (process group), so one `killpg` ends
it with whatever it forked (nginx workers, uvicorn workers), and the CPU time of the whole group
can be read from /proc by process-group id. A child that runs another bench module starts in the
repository root, where `python -m bench.NAME` finds the package whatever the caller's directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import ClientError, ClientSession, web

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
MODEL = "bench-model"
API_KEY = "sk-bench-dummy"
CHAT_REQUEST: dict[str, object] = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
    "max_tokens": 16,
}
CHAT_BODY = json.dumps(CHAT_REQUEST, separators=(",", ":"))
STREAM_BODY = json.dumps({**CHAT_REQUEST, "stream": True}, separators=(",", ":"))
# A real-looking, small chat completion: what the fixed upstream answers to every POST.
FIXED_RESPONSE = json.dumps(
    {
        "id": "chatcmpl-bench0001",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 14, "completion_tokens": 9, "total_tokens": 23},
    },
    separators=(",", ":"),
)
MODELS_RESPONSE = json.dumps(
    {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 1700000000, "owned_by": "bench"}]},
    separators=(",", ":"),
)
CLK_TCK = os.sysconf("SC_CLK_TCK")
Result = dict[str, Any]


# -- ports, commands, processes ---------------------------------------------------------------------

def free_port() -> int:
    """A port that was free a moment ago; the bench binds 127.0.0.1 only."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_command(module: str, *args: str) -> list[str]:
    """Another bench module as a child; run it with `cwd=ROOT` so that the package is found."""
    return [sys.executable, "-m", f"bench.{module}", *args]


class Child:
    """One server process group, pinned with taskset, logging to a file, killed as a group."""

    def __init__(self, name: str, argv: Sequence[str], cpus: str, log_dir: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = ROOT):
        self.name = name
        self.cpus = cpus
        self.log_path = log_dir / f"{name}.log"
        full_env = {**os.environ, **(env or {})}
        with self.log_path.open("ab") as log:
            log.write(f"$ taskset -c {cpus} {' '.join(argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                ["taskset", "-c", cpus, *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,  # pgid == pid: killpg reaches forked workers too
            )
        self.pgid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the group, SIGKILL it after the grace period; safe to call twice."""
        if self.proc.returncode is not None and not _group_alive(self.pgid):
            return
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
            try:
                os.killpg(self.pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                self.proc.poll()
                if not _group_alive(self.pgid):
                    return
                time.sleep(0.05)
        self.proc.poll()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return any(group == pgid and state != "Z" for _, state, group, _ in _proc_stats())


def _proc_stats() -> Iterator[tuple[int, str, int, int]]:
    """(pid, state, process group, user+system clock ticks) of every process, from /proc/*/stat."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the ")" of comm: [0]=state(3) [2]=pgrp(5) [11]=utime(14) [12]=stime(15).
        yield int(entry), fields[0], int(fields[2]), int(fields[11]) + int(fields[12])


def cpu_seconds(pgids: Sequence[int]) -> float:
    """User+system CPU seconds used so far by every live process in the given process groups."""
    wanted = set(pgids)
    return sum(ticks for _, _, group, ticks in _proc_stats() if group in wanted) / CLK_TCK


def process_cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of one process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def start_warden(name: str, config: dict[str, Any], tmp: Path, log_level: str = "warning",
                 quiet: bool = False) -> tuple[subprocess.Popen[bytes], str]:
    """`warden serve` on a config, in an empty working directory of its own (its `.warden/` state,
    spool and embedded store are relative paths) and its own session; returns it and its base URL."""
    workdir = tmp / name
    workdir.mkdir(parents=True, exist_ok=True)
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(config))  # JSON is YAML
    output = subprocess.DEVNULL if quiet else None
    proc = subprocess.Popen([sys.executable, "-m", "proxy", "--log-level", log_level, "serve", "--config", str(path)],
                            cwd=workdir, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                            start_new_session=True)
    return proc, f"http://127.0.0.1:{config['listen']['port']}"


def stop_processes(procs: Sequence[subprocess.Popen[bytes]], grace_s: float = 10.0) -> None:
    """SIGTERM all first, so they shut down side by side; SIGKILL whichever outlives the grace."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- readiness --------------------------------------------------------------------------------------

def post(url: str, body: str, timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body.encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(base: str, children: Sequence[Child], timeout_s: float, stream: bool = False) -> None:
    """Poll with a real chat request until it answers 200, so warm-up starts on a working path."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        for child in children:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited with {child.proc.returncode}:\n{child.log_tail()}")
        try:
            status, data = post(base + "/v1/chat/completions", STREAM_BODY if stream else CHAT_BODY, timeout=5.0)
            if status == 200 and (b"data:" in data if stream else b'"choices"' in data):
                return
            last = f"HTTP {status}: {data[:200]!r}"
        except (OSError, urllib.error.URLError) as exc:
            last = repr(exc)
        time.sleep(0.2)
    tails = "\n".join(f"--- {c.name}:\n{c.log_tail()}" for c in children)
    raise RuntimeError(f"not ready after {timeout_s:.0f}s at {base} ({last})\n{tails}")


async def wait_http(url: str, proc: subprocess.Popen[bytes] | None = None, timeout_s: float = 30.0) -> None:
    """Poll a GET until it answers 200; a child that exits meanwhile fails at once, not at the deadline."""
    deadline = time.monotonic() + timeout_s
    async with ClientSession() as session:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{url}: its process exited with {proc.returncode}")
            with contextlib.suppress(ClientError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} never became ready")


# -- fake upstreams ---------------------------------------------------------------------------------

def chat_upstream(chat: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.Application:
    """An OpenAI-shaped upstream: `chat` answers completions, and /v1/models lists model `m`."""
    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    return app


# -- rounds -----------------------------------------------------------------------------------------

def child_json(argv: list[str], name: str) -> Result:
    """Run one child in the repository root; its last stdout line is its JSON result. A failed child
    ends the bench."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    result: Result = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def interleaved(names: Sequence[str], rounds: int, run: Callable[[str], Result],
                line: Callable[[str, Result], str]) -> dict[str, list[Result]]:
    """Every name once per round, `line` printed as each result comes in.

    A fresh process per name and round keeps imports, heaps and engines from carrying over from
    one measurement to the next; interleaving (round 1 of every name, then round 2, ...) spreads a
    noisy minute of this shared machine over all of them alike.
    """
    results: dict[str, list[Result]] = {name: [] for name in names}
    for number in range(1, rounds + 1):
        for name in names:
            result = run(name)
            results[name].append(result)
            print(f"round {number} {line(name, result)}", flush=True)
    return results


# -- percentiles and the record of the machine ------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100), one definition for every bench; None for no samples."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def percentile_ms(values: Sequence[float], q: float) -> float:
    """The percentile of seconds, in milliseconds; 0 for no samples, so that a report still prints."""
    value = percentile(values, q)
    return 0.0 if value is None else value * 1000


def summary_ms(values: Sequence[float]) -> dict[str, float | None]:
    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 4)

    return {"p50": ms(percentile(values, 50)), "p90": ms(percentile(values, 90)),
            "p99": ms(percentile(values, 99)), "max": ms(max(values) if values else None)}


def first_line(argv: list[str]) -> str:
    """A tool's version line, or "unknown": a missing tool must not stop the record of the run."""
    with contextlib.suppress(OSError, subprocess.SubprocessError, IndexError):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        return (proc.stdout + proc.stderr).strip().splitlines()[0]
    return "unknown"


def machine() -> dict[str, Any]:
    """What the results were measured on, for the JSON: numbers from another machine do not compare."""
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "host_cpus": os.cpu_count(),
        "cpu": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
