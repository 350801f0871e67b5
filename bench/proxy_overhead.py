"""What Warden costs on top of a fast upstream, against the floor (a minimal aiohttp relay),
nginx and LiteLLM, all measured in one run on this machine. A benchmark, not a test.

For every target: closed-loop max req/s (wrk) and req/s per CPU-second of the proxy's
processes; open-loop latency at fixed offered rates (added over direct); streaming time to the
first `data:` line at concurrency 1. Targets are measured *interleaved* (round 1 of every target,
then round 2, ...) so that a noisy minute on a shared machine hits all of them alike, and each
figure is the median of its rounds (latency percentiles over the pooled samples). See README.md.

    .venv/bin/python -m bench.proxy_overhead            # full run, ~7-9 minutes
    .venv/bin/python -m bench.proxy_overhead --quick    # ~1.5-2 minute smoke run
    .venv/bin/python -m bench.proxy_overhead --only warden,relay
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import overhead_measure as measure
from bench import overhead_report as report
from bench import overhead_servers as servers
from bench.harness import RESULTS, Child, cpu_seconds, first_line, free_port, machine, wait_ready

KEYS = ("direct", "warden", "warden-notel", "warden-noloop", "warden-x2", "warden-w1", "warden-w2",
        "warden-w2-notel", "relay", "relay-noloop", "relay-lean", "nginx", "litellm")
# Starts a target in front of the given upstream URL on the given port; [] means "no proxy".
Starter = Callable[[int, str, Path], list[Child]]


@dataclass
class Target:
    key: str
    label: str
    start: Starter
    cpus: str
    ready_timeout_s: float = 20.0


@dataclass
class Live:
    """A started target: where to send requests and which process groups to bill CPU to."""

    target: Target
    base: str
    children: list[Child] = field(default_factory=list)
    pgids: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.base + "/v1/chat/completions"


def build_targets(args: argparse.Namespace) -> tuple[list[Target], dict[str, str]]:
    """The selected targets in order; the second value says why a target cannot run."""
    cpu, x2 = args.proxy_cpus, args.x2_cpus
    every = [
        Target("direct", "direct (no proxy)", lambda p, up, d: [], args.load_cpus),
        Target("warden", "Warden (uvloop)", lambda p, up, d: servers.start_warden("warden", p, up, d, cpu), cpu,
               60.0),
        Target("warden-notel", "Warden (uvloop, telemetry off)",
               lambda p, up, d: servers.start_warden("warden-notel", p, up, d, cpu, telemetry=False), cpu, 60.0),
        Target("warden-noloop", "Warden (asyncio loop)",
               lambda p, up, d: servers.start_warden("warden-noloop", p, up, d, cpu, uvloop=False), cpu, 60.0),
        Target("warden-x2", "Warden ×2 (reuse-port)",
               lambda p, up, d: servers.start_warden("warden-x2", p, up, d, x2, processes=2), x2, 60.0),
        Target("warden-w1", "Warden --workers 1 (supervised, telemetry process)",
               lambda p, up, d: servers.start_warden("warden-w1", p, up, d, x2, workers=1), x2, 60.0),
        Target("warden-w2", "Warden --workers 2 (supervised, telemetry process)",
               lambda p, up, d: servers.start_warden("warden-w2", p, up, d, x2, workers=2), x2, 60.0),
        Target("warden-w2-notel", "Warden --workers 2, telemetry off",
               lambda p, up, d: servers.start_warden("warden-w2-notel", p, up, d, x2, workers=2, telemetry=False),
               x2, 60.0),
        Target("relay", "minimal relay (uvloop)",
               lambda p, up, d: [servers.start_relay("relay", p, up, d, cpu, uvloop=True)], cpu),
        Target("relay-noloop", "minimal relay (asyncio loop)",
               lambda p, up, d: [servers.start_relay("relay-noloop", p, up, d, cpu, uvloop=False)], cpu),
        Target("relay-lean", "minimal relay, Warden's HTTP/1.1 client (uvloop)",
               lambda p, up, d: [servers.start_relay("relay-lean", p, up, d, cpu, uvloop=True, client="lean")], cpu),
        Target("nginx", "nginx proxy",
               lambda p, up, d: [servers.start_nginx_proxy(p, int(up.rsplit(":", 1)[1]), d / f"nginx-{p}", cpu)],
               cpu),
    ]
    unavailable: dict[str, str] = {}
    if "litellm" in args.only:
        exe, why = servers.litellm_status(install=not args.no_litellm_install)
        if exe is None:
            unavailable["litellm"] = why
            print(f"# LiteLLM will NOT be measured: {why}", flush=True)
        else:
            every.append(Target("litellm", f"LiteLLM proxy ({why})",
                                lambda p, up, d: [servers.start_litellm(exe, p, up, d, cpu)], cpu, 180.0))
    return [t for t in every if t.key in args.only], unavailable


def start_all(targets: list[Target], upstream: Child, upstream_url: str, run_dir: Path, stream: bool,
              results: dict[str, dict[str, Any]]) -> list[Live]:
    """Start every target in front of one upstream; a target that fails is recorded and skipped."""
    lives = []
    for target in targets:
        if results[target.key].get("error"):
            continue
        if target.key == "direct":
            lives.append(Live(target, upstream_url, [], [upstream.pgid]))
            continue
        port = free_port()
        children: list[Child] = []
        try:
            children = target.start(port, upstream_url, run_dir)
            wait_ready(f"http://127.0.0.1:{port}", children, target.ready_timeout_s, stream=stream)
        except (RuntimeError, OSError) as exc:
            for child in children:
                child.stop()
            print(f"#   {target.key} did not start: {exc}", flush=True)
            results[target.key]["error"] = f"did not start: {exc}"
            continue
        lives.append(Live(target, f"http://127.0.0.1:{port}", children, [c.pgid for c in children]))
    return lives


def stop_all(lives: list[Live]) -> None:
    for live in lives:
        for child in live.children:
            child.stop()


def _failed(live: Live, results: dict[str, dict[str, Any]], exc: Exception) -> None:
    """One target going wrong (crashed, unparsable output) costs that target, not the run."""
    print(f"#   {live.target.key} FAILED: {exc}", flush=True)
    results[live.target.key].setdefault("error", f"failed while measuring: {exc}")


def throughput_phase(args: argparse.Namespace, lives: list[Live], upstream: Child, lua: Path,
                     results: dict[str, dict[str, Any]]) -> None:
    for live in lives:
        measure.run_wrk(args.load_cpus, args.threads, args.connections, live.url, lua, args.warmup)
    rounds: dict[str, list[dict[str, Any]]] = {live.target.key: [] for live in lives}
    for n in range(args.repeat):
        for live in lives:
            if results[live.target.key].get("error"):
                continue
            try:
                run = measure.wrk_with_cpu(args, live.url, lua, live.pgids, upstream.pgid,
                                           measure.cpu_list(live.target.cpus))
            except (RuntimeError, subprocess.SubprocessError) as exc:
                _failed(live, results, exc)
                continue
            rounds[live.target.key].append(run)
            print(f"#   round {n + 1} {live.target.key}: {run['rps']:.0f} req/s, {run['rps_per_cpu_s']} req/CPU-s, "
                  f"proxy {run['proxy_cores']:.2f} cores, steal {run['steal_pct']}%, others {run['other_pct']}%",
                  flush=True)
            measure.settle(live.pgids)
    for key, runs in rounds.items():
        if runs:
            results[key]["wrk"] = measure.summarise_wrk(runs)


def open_loop_phase(args: argparse.Namespace, lives: list[Live], results: dict[str, dict[str, Any]],
                    rates: list[int], slot: str = "open_loop") -> None:
    """Rates a target plainly cannot sustain (over 1.5x its wrk max) are skipped unless --overload:
    the backlog would only measure queueing, and would slow whichever target ran next."""
    seconds = args.ol_duration / args.ol_rounds
    for rate in rates:
        runs: dict[str, list[dict[str, Any]]] = {live.target.key: [] for live in lives}
        for _ in range(args.ol_rounds):
            for live in lives:
                key = live.target.key
                if results[key].get("error"):
                    continue
                capacity = results[key]["wrk"]["rps"]
                if capacity and rate > 1.5 * capacity and not args.overload:
                    continue
                cpu0 = cpu_seconds(live.pgids)
                try:
                    run = measure.run_loadgen(
                        args.load_cpus, "rate", "--url", live.url, "--rate", str(rate), "--duration", f"{seconds:g}",
                        timeout_s=seconds + 60)
                except (RuntimeError, subprocess.SubprocessError, ValueError) as exc:
                    _failed(live, results, exc)
                    continue
                run["cpu_s"] = cpu_seconds(live.pgids) - cpu0
                runs[key].append(run)
                measure.settle(live.pgids)
        for live in lives:
            key = live.target.key
            if results[key].get("error"):
                continue
            if runs[key]:
                pooled = measure.pool(runs[key], "latency_ms")
                # CPU per request at a modest rate: wake-ups and cold caches make it dearer than under wrk.
                cpu = sum(run["cpu_s"] for run in runs[key])
                pooled["cpu_us_per_request"] = round(1e6 * cpu / pooled["ok"], 1) if pooled.get("ok") else None
                results[key].setdefault(slot, {})[str(rate)] = pooled
                tag = " (awake)" if slot != "open_loop" else ""
                print(f"#   {key} @{rate}/s{tag}: p50 {pooled['latency_ms']['p50']} ms, "
                      f"p99 {pooled['latency_ms']['p99']} ms, failed {pooled.get('failed')}, "
                      f"dropped {pooled.get('dropped')}, {pooled['cpu_us_per_request']} us CPU/request", flush=True)
            else:
                results[key].setdefault(slot, {})[str(rate)] = {
                    "skipped": f"over capacity (max {results[key]['wrk']['rps']:.0f} req/s)"}


def ttfb_phase(args: argparse.Namespace, lives: list[Live], results: dict[str, dict[str, Any]]) -> None:
    runs: dict[str, list[dict[str, Any]]] = {live.target.key: [] for live in lives}
    per_round = max(1, args.ttfb_iterations // args.ol_rounds)
    for _ in range(args.ol_rounds):
        for live in lives:
            try:
                runs[live.target.key].append(measure.run_loadgen(
                    args.load_cpus, "ttfb", "--url", live.url, "--iterations", str(per_round), timeout_s=600))
            except (RuntimeError, subprocess.SubprocessError, ValueError) as exc:
                _failed(live, results, exc)
    for key, key_runs in runs.items():
        if not key_runs:
            continue
        results[key]["ttfb"] = measure.pool(key_runs, "ttfb_ms")
        print(f"#   {key}: TTFB p50 {results[key]['ttfb']['ttfb_ms']['p50']} ms", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=lambda s: [k.strip() for k in s.split(",") if k.strip()],
                        help=f"comma-separated targets out of {','.join(KEYS)} (direct is always added)")
    parser.add_argument("--quick", action="store_true", help="short durations: a ~1.5-2 minute smoke run")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 6, quick 2)")
    parser.add_argument("--repeat", type=int, help="interleaved wrk rounds, median kept (default 3, quick 1)")
    parser.add_argument("--warmup", type=float, help="seconds of wrk warm-up per target (default 2, quick 1)")
    parser.add_argument("--ol-duration", type=float, help="open-loop seconds per rate and target (default 10, quick 2)")
    parser.add_argument("--ol-rounds", type=int, help="interleaved rounds for open loop and TTFB (default 2, quick 1)")
    parser.add_argument("--ttfb-iterations", type=int, help="streaming requests per target (default 400, quick 60)")
    parser.add_argument("--rates", type=lambda s: [int(r) for r in s.split(",")], default=[200, 500],
                        help="open-loop offered rates, req/s (default 200,500)")
    parser.add_argument("--awake", type=lambda s: [int(r) for r in s.split(",")], default=[], metavar="RATES",
                        help="open loop once more at these rates (e.g. 200) with the proxy CPUs kept from idling "
                             "(an idle-class spinner): how much of the added latency is the VM waking an idle vCPU; "
                             "the checks read 200 req/s, other rates go to the JSON only")
    parser.add_argument("--overload", action="store_true", help="run open-loop rates above a target's capacity too")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--load-cpus", default="0", help="taskset CPUs for wrk, loadgen and upstreams (default 0)")
    parser.add_argument("--proxy-cpus", default="1", help="taskset CPUs for each proxy under test (default 1)")
    parser.add_argument("--x2-cpus", default="0,1", help="taskset CPUs for the 2 Warden processes (default 0,1)")
    parser.add_argument("--no-litellm-install", action="store_true", help="do not create bench/.venv-litellm")
    parser.add_argument("--json", type=Path, default=RESULTS / "proxy_overhead.json")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir of configs and server logs")
    args = parser.parse_args(argv)
    for name, full, short in (("duration", 6.0, 2.0), ("repeat", 3, 1), ("warmup", 2.0, 1.0),
                              ("ol_duration", 10.0, 2.0), ("ol_rounds", 2, 1), ("ttfb_iterations", 400, 60)):
        if getattr(args, name) is None:
            setattr(args, name, short if args.quick else full)
    args.only = args.only or list(KEYS)
    unknown = set(args.only) - set(KEYS)
    if unknown:
        parser.error(f"unknown target(s): {', '.join(sorted(unknown))}; choose from {','.join(KEYS)}")
    if "direct" not in args.only:
        args.only.insert(0, "direct")
    return args


def environment(args: argparse.Namespace) -> dict[str, Any]:
    """The machine, the tools' versions and the pinning: what another run must match to compare."""
    import aiohttp
    import uvloop

    return {
        **machine(),
        "aiohttp": aiohttp.__version__,
        "uvloop": getattr(uvloop, "__version__", "unknown"),
        "nginx": first_line([servers.NGINX, "-v"]),
        "wrk": first_line(["wrk", "--version"]),
        "pinning": {"load_and_upstreams": args.load_cpus, "proxy": args.proxy_cpus, "warden_x2": args.x2_cpus},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up exactly like Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None or not Path(servers.NGINX).exists():
        print("proxy_overhead: needs wrk and nginx (apt-get install wrk nginx-light)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _raise_interrupt)
    started = time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix="warden-bench-"))
    lua = run_dir / "post.lua"
    lua.write_text(measure.WRK_LUA)
    targets, unavailable = build_targets(args)
    results: dict[str, dict[str, Any]] = {
        key: {"cpus": args.proxy_cpus, "open_loop": {}} | ({"error": unavailable[key]} if key in unavailable else {})
        for key in args.only}
    for target in targets:
        results[target.key]["cpus"] = target.cpus
    fixed_port, sse_port = free_port(), free_port()
    fixed = servers.start_fixed_upstream(fixed_port, run_dir / "upstream-nginx", args.load_cpus)
    sse = servers.start_upstream_sse(sse_port, run_dir, args.load_cpus)
    lives: list[Live] = []
    interrupted = False
    print(f"# pinning: wrk, loadgen and both upstreams on CPU {args.load_cpus}; each proxy on CPU {args.proxy_cpus} "
          f"(Warden x2 on {args.x2_cpus}); logs in {run_dir}", flush=True)
    try:
        wait_ready(f"http://127.0.0.1:{fixed_port}", [fixed], 10)
        wait_ready(f"http://127.0.0.1:{sse_port}", [sse], 10, stream=True)
        print("# phase 1: closed-loop throughput (wrk), interleaved rounds", flush=True)
        lives = start_all(targets, fixed, f"http://127.0.0.1:{fixed_port}", run_dir, False, results)
        throughput_phase(args, lives, fixed, lua, results)
        print("# phase 2: open-loop latency at fixed offered rates", flush=True)
        open_loop_phase(args, lives, results, args.rates)
        if args.awake:
            print("# phase 2b: open loop again with the proxy CPUs kept awake", flush=True)
            with measure.awake(measure.cpu_list(args.proxy_cpus)):
                open_loop_phase(args, lives, results, args.awake, slot="open_loop_awake")
        stop_all(lives)
        print("# phase 3: streaming time to first byte (targets restarted in front of the SSE upstream)", flush=True)
        lives = start_all(targets, sse, f"http://127.0.0.1:{sse_port}", run_dir, True, results)
        ttfb_phase(args, lives, results)
    except KeyboardInterrupt:
        interrupted = True
        print("\n# interrupted: stopping every child; partial results below", flush=True)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        interrupted = True
        print(f"# run aborted: {exc}", flush=True)
    finally:
        stop_all(lives)
        fixed.stop()
        sse.stop()
        if not args.keep_logs:
            shutil.rmtree(run_dir, ignore_errors=True)
    labels = {t.key: t.label for t in targets} | {k: f"{k} (not run)" for k in unavailable}
    items = report.checks(results)
    table = report.table(results, labels, args.rates)
    kind = ("quick" if args.quick else "full") + (" run, PARTIAL" if interrupted else " run")
    print(f"\n## Proxy overhead ({kind}, {time.monotonic() - started:.0f}s)\n")
    print(f"Latencies in ms; *added* = target minus direct in the same run. wrk: {args.threads} threads, "
          f"{args.connections} connections, {args.repeat}×{args.duration:g}s interleaved rounds (median). "
          f"Pinning: wrk, load generator and upstreams on CPU {args.load_cpus}; each proxy on CPU "
          f"{args.proxy_cpus}; Warden ×2 on CPUs {args.x2_cpus}.\n")
    print(table + "\n\n" + report.checks_markdown(items) + "\n")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"environment": environment(args), "complete": not interrupted, "results": results,
                                     "checks": [c.as_dict() for c in items], "markdown_table": table},
                                    indent=2, default=str) + "\n")
    print(f"# JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
