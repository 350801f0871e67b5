"""The measuring tools the bench drives: wrk (closed loop), loadgen.py (open loop, TTFB), and
the machine's own counters (CPU time per process group, hypervisor steal per CPU).

Everything runs pinned with taskset to the load CPUs, away from the proxy under test.
"""

from __future__ import annotations

import contextlib
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.harness import CHAT_BODY, CLK_TCK, ROOT, bench_command, cpu_seconds, summary_ms

WRK_LUA = f"""wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench-dummy"
wrk.body = '{CHAT_BODY}'
"""


def cpu_list(spec: str) -> list[int]:
    """taskset syntax ("1", "0,1", "0-3") to CPU numbers."""
    cpus: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


@contextlib.contextmanager
def awake(cpus: list[int]) -> Iterator[None]:
    """Keep these CPUs from going idle with a spinner in the idle scheduling class (SCHED_IDLE).

    On a VM an idle vCPU halts, and the next packet for it waits for the hypervisor to run it
    again; a proxy crosses vCPUs four times per request. The spinner yields to any runnable task
    at once, so what it removes from the added latency is that wake-up cost, not proxy work.
    """
    spinners = [subprocess.Popen(["chrt", "-i", "0", "taskset", "-c", str(cpu), sys.executable, "-c", "while 1: pass"])
                for cpu in cpus]
    try:
        time.sleep(0.2)
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def cpu_counters(cpus: list[int]) -> tuple[float, float]:
    """(busy, steal) seconds of these CPUs from /proc/stat. Busy minus the proxy's own CPU is
    what other processes took from it; steal is the hypervisor running someone else's VM."""
    busy = steal = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus and len(values) > 7:
            user, nice, system, _idle, _iowait, irq, softirq, stolen = (int(v) for v in values[:8])
            busy += user + nice + system + irq + softirq
            steal += stolen
    return busy / CLK_TCK, steal / CLK_TCK


def run_wrk(load_cpus: str, threads: int, connections: int, url: str, lua: Path, seconds: float) -> dict[str, Any]:
    argv = ["taskset", "-c", load_cpus, "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s",
            "--timeout", "10s", "-s", str(lua), url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    done = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if rps is None or done is None:
        raise RuntimeError(f"could not parse wrk output:\n{out}")
    return {"rps": float(rps.group(1)), "requests": int(done.group(1)),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(int(g) for g in sock.groups()) if sock else 0}


def wrk_with_cpu(args: Any, url: str, lua: Path, pgids: list[int], upstream_pgid: int,
                 proxy_cpus: list[int]) -> dict[str, Any]:
    """One wrk run plus what it cost: proxy CPU seconds, upstream CPU, steal on the proxy's CPUs."""
    cpu0, up0 = cpu_seconds(pgids), cpu_seconds([upstream_pgid])
    (busy0, steal0), t0 = cpu_counters(proxy_cpus), time.monotonic()
    run = run_wrk(args.load_cpus, args.threads, args.connections, url, lua, args.duration)
    wall = time.monotonic() - t0
    cpu = cpu_seconds(pgids) - cpu0
    busy1, steal1 = cpu_counters(proxy_cpus)
    run.update(
        cpu_s=round(cpu, 3), proxy_cores=round(cpu / wall, 3),
        upstream_cores=round((cpu_seconds([upstream_pgid]) - up0) / wall, 3),
        steal_pct=round(100 * (steal1 - steal0) / (wall * len(proxy_cpus)), 1),
        other_pct=round(100 * max(0.0, busy1 - busy0 - cpu) / (wall * len(proxy_cpus)), 1),
        rps_per_cpu_s=round(run["requests"] / cpu, 1) if cpu > 0 else None,
    )
    return run


def summarise_wrk(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds (robust to one noisy round), with every round kept for the JSON."""
    def med(key: str) -> float | None:
        values = [float(r[key]) for r in rounds if r.get(key) is not None]
        return round(statistics.median(values), 3) if values else None

    return {"rps": med("rps"), "rps_per_cpu_s": med("rps_per_cpu_s"), "proxy_cores": med("proxy_cores"),
            "upstream_cores": med("upstream_cores"), "steal_pct": med("steal_pct"), "other_pct": med("other_pct"),
            "non_2xx": sum(r["non_2xx"] for r in rounds), "socket_errors": sum(r["socket_errors"] for r in rounds),
            "rounds": rounds}


def run_loadgen(load_cpus: str, *loadgen_args: str, timeout_s: float) -> dict[str, Any]:
    argv = ["taskset", "-c", load_cpus, *bench_command("overhead_loadgen", *loadgen_args)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen {loadgen_args[0]} failed: {proc.stderr[-2000:]}")
    return dict(json.loads(proc.stdout))


def pool(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Percentiles over the raw samples of every round; counters summed. Raw samples are dropped."""
    samples = [us / 1e6 for run in runs for us in run.pop("samples_us", [])]
    out: dict[str, Any] = {key: summary_ms(samples), "samples": len(samples), "rounds": runs}
    for counter in ("scheduled", "ok", "failed", "dropped", "errors"):
        if any(counter in run for run in runs):
            out[counter] = sum(run.get(counter, 0) for run in runs)
    return out


def settle(pgids: list[int], limit_s: float = 10.0) -> None:
    """Wait until the target is idle again, so a backlog it still chews on cannot slow the next one."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = cpu_seconds(pgids)
        time.sleep(0.25)
        if cpu_seconds(pgids) - before < 0.025:
            return
