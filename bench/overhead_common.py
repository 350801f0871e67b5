"""Shared pieces of the proxy-overhead benchmark: payloads, child processes, CPU accounting.

Every server the bench starts is a child in its own session (process group), so one
`killpg` ends it with whatever it forked (nginx workers, uvicorn workers), and the CPU time of
the whole group can be read from /proc by process-group id.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

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


def free_port() -> int:
    """A port that was free a moment ago; the bench binds 127.0.0.1 only."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Child:
    """One server process group, pinned with taskset, logging to a file, killed as a group."""

    def __init__(self, name: str, argv: Sequence[str], cpus: str, log_dir: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None):
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
    return bool(_group_pids(pgid))


def _group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a group, found by reading /proc/*/stat."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def cpu_seconds(pgids: Sequence[int]) -> float:
    """User+system CPU seconds used so far by every live process in the given process groups."""
    total = 0
    wanted = set(pgids)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the ")" of comm: [0]=state(3) [2]=pgrp(5) [11]=utime(14) [12]=stime(15).
        if int(fields[2]) in wanted:
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


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
