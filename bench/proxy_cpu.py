"""Python's CPU per request with the network taken out: Warden against the same floor, to a few percent.

`bench/proxy_overhead.py` measures through real sockets, and on this shared 2-core machine its
throughput moves 20-30% between minutes: too coarse to see what one change to the hot path
saves. Here fake client connections feed HTTP/1.1 requests straight into the real aiohttp
server protocol, and the upstream is a fake transport under Warden's own HTTP/1.1 client that
answers from memory one loop turn later (the answer nginx gives in the other bench). The loop
(uvloop), the server, the relay and the client are the real ones; no syscall, no other process.
What is left is the Python each request costs, measured as process CPU time, in a fresh process
per target and round, targets interleaved.

Targets: `warden` (telemetry off, detectors off, as `warden serve --upstream`), `warden-tel`
(with the embedded chDB telemetry: its flush thread's CPU counts too) and `relay-lean` (the
minimal relay's handler on Warden's client, `python -m bench.minimal_relay --client lean`), the floor
with the same server and client, so the ratio is the price of Warden's features alone.

    .venv/bin/python -m bench.proxy_cpu [--requests 20000] [--rounds 3] [--only warden,relay-lean]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httptools
from aiohttp import web

from bench.harness import CHAT_BODY, FIXED_RESPONSE, bench_command, child_json, interleaved
from proxy.server import settle_heap
from proxy.upstream import http1

TARGETS = ("warden", "warden-tel", "relay-lean")
UPSTREAM = "http://127.0.0.1:9"  # never dialled: the fake transport stands in for it
REQUEST = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n"
           f"Authorization: Bearer sk-bench-dummy\r\nContent-Length: {len(CHAT_BODY)}\r\n\r\n{CHAT_BODY}").encode()
ANSWER = (f"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 28 Nov 2026 18:00:00 GMT\r\n"
          f"Content-Type: application/json\r\nContent-Length: {len(FIXED_RESPONSE)}\r\nConnection: keep-alive\r\n"
          f"\r\n{FIXED_RESPONSE}").encode()


class _Transport(asyncio.Transport):
    """What the protocols need of a socket's transport; writes go to `sink` instead of a socket."""

    def __init__(self, protocol: asyncio.Protocol, sink: Any) -> None:
        super().__init__()
        self._protocol = protocol
        self._sink = sink
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._sink(bytes(data))

    def writelines(self, lines: Any) -> None:
        self._sink(b"".join(lines))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            asyncio.get_running_loop().call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_reading(self) -> bool:
        return not self._closing

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def can_write_eof(self) -> bool:
        return False


async def _fake_connect(self: http1.Http1Client, origin: http1.Origin) -> http1._Connection:
    """The upstream: every request written gets ANSWER back on the next loop turn."""
    conn = http1._Connection(self, origin)
    loop = asyncio.get_running_loop()
    conn.connection_made(_Transport(conn, lambda data: loop.call_soon(conn.data_received, ANSWER)))
    return conn


class _Client:
    """One keep-alive client connection, closed loop: the next request goes once the answer has ended."""

    def __init__(self, server: Any, left: list[int], done: asyncio.Future[None]) -> None:
        self.loop = asyncio.get_running_loop()
        self.left, self.done = left, done
        self.parser = httptools.HttpResponseParser(self)
        self.statuses: dict[int, int] = {}
        self.protocol = server()
        self.protocol.connection_made(_Transport(self.protocol, self.parser.feed_data))

    def send(self) -> None:
        if self.left[0] <= 0:
            return
        self.left[0] -= 1
        self.loop.call_soon(self.protocol.data_received, REQUEST)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if self.left[0] > 0:
            self.send()
        elif not self.done.done() and all(v == 0 for v in self.left[1:]):
            self.done.set_result(None)


async def _app(target: str, workdir: Path) -> web.AppRunner:
    if target == "relay-lean":
        from bench import minimal_relay

        app = web.Application()
        app[minimal_relay.UPSTREAM] = UPSTREAM
        app[minimal_relay.LEAN] = http1.Http1Client(connect_timeout_s=5, read_timeout_s=60)
        app.router.add_route("*", "/{tail:.*}", minimal_relay.relay_lean)
        runner = web.AppRunner(app, access_log=None)
    else:
        from proxy.app.factory import create_app
        from proxy.settings import build_settings

        group = {"name": "default", "models": ["*"], "backends": [{"url": UPSTREAM}], "health": {"interval_s": 3600}}
        telemetry = {"enabled": target == "warden-tel", "dsn": f"chdb://{workdir / 'chdb'}",
                     "spool_dir": str(workdir / "spool")}
        settings = build_settings({"upstreams": [group], "telemetry": telemetry})
        runner = web.AppRunner(create_app(settings), handler_cancellation=True, access_log=None,
                               keepalive_timeout=settings.timeouts.keepalive_s)
    await runner.setup()
    return runner


async def measure(target: str, requests: int, concurrency: int, workdir: Path) -> dict[str, Any]:
    http1.Http1Client._connect = _fake_connect  # type: ignore[method-assign]
    runner = await _app(target, workdir)
    assert runner.server is not None
    try:
        async def run(n: int) -> dict[int, int]:
            left = [n]
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            clients = [_Client(runner.server, left, done) for _ in range(concurrency)]
            for client in clients:
                client.send()
            await done
            await asyncio.sleep(0.01)  # the last answers' bookkeeping (metrics, telemetry rows)
            statuses: dict[int, int] = {}
            for client in clients:
                for status, count in client.statuses.items():
                    statuses[status] = statuses.get(status, 0) + count
                client.protocol.connection_lost(None)
            return statuses

        await run(max(1000, requests // 10))  # warm-up: pools, caches, metric children
        if target != "relay-lean":
            settle_heap()  # as `warden serve` does after startup; the relay runs with Python's defaults
        if os.environ.get("PROXY_CPU_NO_GC"):
            gc.disable()  # to see what the collector costs
        cpu, wall = time.process_time(), time.perf_counter()
        statuses = await run(requests)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await runner.cleanup()
    if set(statuses) != {200}:
        raise SystemExit(f"{target}: answers were not all 200: {statuses}")
    return {"target": target, "requests": sum(statuses.values()), "cpu_us": cpu / requests * 1e6,
            "wall_us": wall / requests * 1e6}


def _one(target: str, args: argparse.Namespace) -> dict[str, Any]:
    """One target, one round, in a fresh process (its own imports and heap)."""
    return child_json(bench_command("proxy_cpu", "--child", target, "--requests", str(args.requests),
                                    "--concurrency", str(args.concurrency)), target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(TARGETS))
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--child", choices=TARGETS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import uvloop

        with tempfile.TemporaryDirectory() as tmp:
            result = uvloop.run(measure(args.child, args.requests, args.concurrency, Path(tmp)))
        print(json.dumps(result))
        return 0
    targets = [t.strip() for t in args.only.split(",") if t.strip()]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown target(s) {sorted(unknown)}; choose from {', '.join(TARGETS)}")
    rounds = interleaved(targets, args.rounds, lambda target: _one(target, args),
                         lambda target, r: f"{target:11s} {r['cpu_us']:7.1f} µs CPU/request "
                                           f"({r['wall_us']:.1f} µs wall)")
    summary = {t: statistics.median(r["cpu_us"] for r in rs) for t, rs in rounds.items()}
    # Other tenants of a shared host only ever add time, so the least of several rounds is the
    # closest to the code's own cost; on a noisy day (±30% between rounds) compare those.
    least = {t: min(r["cpu_us"] for r in rs) for t, rs in rounds.items()}
    print(f"\nCPU per request over {args.rounds} rounds of {args.requests:,} requests (c={args.concurrency}), "
          f"loop: uvloop, {os.cpu_count()} CPUs: median (least)")
    for target, value in summary.items():
        print(f"  {target:11s} {value:7.1f} µs ({least[target]:.1f})")
    if "warden" in summary and "relay-lean" in summary:
        print(f"  relay-lean / warden: {summary['relay-lean'] / summary['warden']:.2f}x "
              f"({least['relay-lean'] / least['warden']:.2f}x) (Warden's share of the floor's throughput, Python only)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": rounds, "median_cpu_us": summary, "least_cpu_us": least,
                                               "requests": args.requests, "concurrency": args.concurrency},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
