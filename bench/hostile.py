"""A short hostile-client run against `warden serve`: each class of issue 23, a handful of attempts.

Bounded and loopback only: one `warden serve` (keys for two tenants, review UI, the `patterns`
detector redacting secrets, telemetry into embedded chDB, the control plane on its own port when
`admin.listen` exists) in front of an in-process upstream that records what reaches it. Every
attempt is judged held or broken from outside (status, headers, what the upstream saw, the
server's log, file modes); prints a table and JSON of attempts/held per class.

    .venv/bin/python -m bench.hostile [--json bench/results/hostile.json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, CookieJar, web

from bench.harness import chat_upstream, free_port, percentile, wait_http
from proxy.governance.keys import digest, new_key
from proxy.settings import WardenSettings

CLASSES = {
    1: "login flood", 2: "tenant rules on other routes", 3: "invalid Unicode", 4: "secrets in logs",
    5: "request ids", 6: "data at rest", 7: "Unicode tricks against detectors", 8: "separate listeners",
}
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
BODY_SECRET = "hostile-body-secret-5e1"
COOKIE_SECRET = "hostile-cookie-secret-0b9"


class Upstream:
    """Records every request body and header set that reached it."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, str], bytes]] = []

    async def chat(self, request: web.Request) -> web.Response:
        self.seen.append(({k.lower(): v for k, v in request.headers.items()}, await request.read()))
        return web.json_response({"id": "c", "object": "chat.completion", "model": "m",
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                                               "finish_reason": "stop"}],
                                  "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    async def other(self, request: web.Request) -> web.Response:
        self.seen.append(({k.lower(): v for k, v in request.headers.items()}, await request.read()))
        return web.json_response({"ok": True})


class Run:
    def __init__(self) -> None:
        self.results: dict[int, list[bool]] = {c: [] for c in CLASSES}
        self.notes: dict[int, str] = {}

    def held(self, cls: int, ok: bool) -> None:
        self.results[cls].append(bool(ok))


def config(port: int, admin_port: int | None, upstream: str, keys: dict[str, tuple[str, str]]) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": port},
        "upstreams": [{"name": "main", "backends": [{"url": upstream}], "models": ["m"]}],
        "server": {"uvloop": False, "shutdown_grace_s": 2},
        "governance": {
            "keys": [{"id": kid, "tenant": tenant, "sha256": digest(secret)}
                     for tenant, (kid, secret) in keys.items()],
            "tenants": {"acme": {"models": ["m"]}, "evil": {"models": ["m"]}},
        },
        "review": {"enabled": True, "db_path": ".warden/review/review.sqlite3",
                   "reviewers": [{"name": "carol", "token_sha256": hashlib.sha256(b"t" * 40).hexdigest()}]},
        "detectors": [{"name": "secrets", "type": "patterns"}],
        "policy": {"rules": [{"detector": "secrets", "action": "redact"}]},
        "telemetry": {"enabled": True, "dsn": "chdb://.warden/clickhouse", "spool_dir": ".warden/spool",
                      "flush_interval_s": 0.2},
    }
    if admin_port is not None:
        cfg["admin"] = {"listen": f"127.0.0.1:{admin_port}"}
    return cfg


async def raw(base: str, data: bytes) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()


async def login_flood(run: Run, http: ClientSession, base: str, admin: str) -> None:
    """8 wrong logins from one address at once while /healthz is probed: 429s come, healthz stays fast."""
    async def attempt() -> int:
        async with http.get(admin + "/review/login") as resp:
            page = await resp.text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        form = {"csrf": csrf.group(1) if csrf else "", "name": "carol", "password": "wrong"}
        async with http.post(admin + "/review/login", data=form, allow_redirects=False) as resp:
            return resp.status

    async def probe() -> list[float]:
        lags = []
        for _ in range(20):
            started = time.perf_counter()
            async with http.get(base + "/healthz") as resp:
                await resp.read()
            lags.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)
        return lags

    statuses, lags = await asyncio.gather(asyncio.gather(*(attempt() for _ in range(8))), probe())
    p90 = percentile(lags, 0.9) or 0.0
    run.notes[1] = f"statuses {sorted(statuses)}, /healthz p90 {p90 * 1000:.0f} ms"
    for status in statuses:
        run.held(1, status in (200, 401, 403, 429))  # refused, never let in
    run.held(1, 429 in statuses)
    run.held(1, p90 < 0.5)


async def tenant_rules(run: Run, http: ClientSession, base: str, up: Upstream, evil: str) -> None:
    for ctype in ("text/plain", "application/octet-stream", ""):
        for path in ("/v1/files", "/v1/moderations"):
            before = len(up.seen)
            headers = {"Authorization": f"Bearer {evil}", **({"Content-Type": ctype} if ctype else {})}
            async with http.post(base + path, data=b'{"model":"forbidden-model","input":"x"}', headers=headers) as r:
                run.held(2, 400 <= r.status < 500 and len(up.seen) == before)


async def invalid_unicode(run: Run, http: ClientSession, base: str, up: Upstream, acme: str) -> None:
    bodies = [
        '{"model":"m","messages":[{"role":"user","content":"hi \\ud800"}]}',
        '{"model":"m\\udc00","messages":[]}',
        '{"model":"m","messages":[{"role":"user","content":"a"}],"\\uD83D":1}',
        '{"model":"m","messages":[{"role":"user","content":"safe","content":"\\ud800"}]}',
        '{"model":"m","messages":[{"role":"user","content":"ok"}],"model":"other"}',
    ]
    for body in bodies:
        before = len(up.seen)
        async with http.post(base + "/v1/chat/completions", data=body.encode(),
                             headers={"Authorization": f"Bearer {acme}", "Content-Type": "application/json"}) as r:
            payload = await r.json(content_type=None)
            run.held(3, r.status == 400 and payload["error"]["code"] in ("invalid_unicode", "duplicate_key")
                     and len(up.seen) == before)
    async with http.get(base + "/healthz") as r:
        run.held(3, r.status == 200)


async def secrets_in_logs(run: Run, base: str, acme: str, log_path: Path) -> None:
    body = ('{"model":"m","messages":[{"role":"user","content":"' + BODY_SECRET + '"}]}').encode()
    head = (f"Authorization: Bearer {acme}\nX-Api-Key: {acme}\nCookie: warden_review={COOKIE_SECRET}\n"
            f"Content-Length: {len(body)}\n").encode()
    requests = [
        b"POST /v1/chat/completions HTTP/1.1\nHost: x\n" + head + b"\n" + body,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + head.replace(b"\n", b"\r\n", 1) + b"\n" + body,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + head.replace(b"\n", b"\r\n")
        + b"X\x01: y\r\n\r\n" + body,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + head.replace(b"\n", b"\r\n")
        + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    ]
    answers = [await raw(base, data) for data in requests]
    await asyncio.sleep(0.5)  # let the server's log reach its file
    log = await asyncio.to_thread(log_path.read_bytes)
    for answer in answers:
        leaked = [s for s in (acme, COOKIE_SECRET, BODY_SECRET) if s.encode() in answer or s.encode() in log]
        run.held(4, not leaked)


async def request_ids(run: Run, http: ClientSession, base: str, acme: str, evil: str) -> None:
    async with http.post(base + "/v1/chat/completions", json={"model": "m", "messages": []},
                         headers={"Authorization": f"Bearer {acme}"}) as r:
        victim = r.headers.get("X-Request-Id", "")
    seen = {victim}
    for sent in (victim, victim, "guess-" + victim[:8], "00000000000000000000000000000001"):
        async with http.post(base + "/v1/chat/completions", json={"model": "m", "messages": []},
                             headers={"Authorization": f"Bearer {evil}", "X-Request-Id": sent}) as r:
            got = r.headers.get("X-Request-Id", "")
            run.held(5, got != sent and got not in seen and re.fullmatch(r"[0-9a-f]{32}", got) is not None)
            seen.add(got)


def data_at_rest(run: Run, workdir: Path) -> None:
    state = workdir / ".warden"
    for path in [p for p in (state / "review", state / "spool") if p.exists()]:
        for item in [path, *path.rglob("*")]:
            mode = stat.S_IMODE(item.stat().st_mode)
            run.held(6, mode == (0o700 if item.is_dir() else 0o600))


async def unicode_tricks(run: Run, http: ClientSession, base: str, up: Upstream, acme: str) -> None:
    variants = [AWS_KEY[:4] + "\u200b" + AWS_KEY[4:], AWS_KEY[:6] + "\u00ad" + AWS_KEY[6:],
                "".join(chr(ord(c) + 0xFEE0) for c in AWS_KEY), AWS_KEY[:4] + "\u2060" + AWS_KEY[4:]]
    for text in variants:
        before = len(up.seen)
        body = {"model": "m", "messages": [{"role": "user", "content": f"my key is {text} ok"}]}
        headers = {"Authorization": f"Bearer {acme}"}
        async with http.post(base + "/v1/chat/completions", json=body, headers=headers) as r:
            await r.read()
        sent = up.seen[before][1].decode() if len(up.seen) > before else ""
        run.held(7, text not in json.loads(sent or "{}").get("messages", [{}])[0].get("content", text))


async def listeners(run: Run, http: ClientSession, base: str, admin: str | None) -> None:
    if admin is None:
        return
    for path in ("/metrics", "/review/login", "/admin/keys"):
        async with http.get(base + path) as r:
            run.held(8, r.status == 404)
    async with http.get(admin + "/metrics") as r:
        run.held(8, r.status == 200)


async def main_async() -> dict[str, Any]:
    up = Upstream()
    app = chat_upstream(up.chat)
    app.router.add_route("*", "/v1/{tail:.*}", up.other)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    up_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", up_port).start()
    admin_supported = "admin" in WardenSettings.model_fields
    port, admin_port = free_port(), free_port() if admin_supported else None
    acme_id, acme = new_key()
    evil_id, evil = new_key()
    run = Run()
    with tempfile.TemporaryDirectory(prefix="warden-hostile-") as tmp:
        workdir = Path(tmp)
        cfg_path = workdir / "warden.json"
        cfg_path.write_text(json.dumps(config(port, admin_port, f"http://127.0.0.1:{up_port}",
                                              {"acme": (acme_id, acme), "evil": (evil_id, evil)})))
        log_path = workdir / "warden.log"
        proc = start(cfg_path, workdir, log_path)
        base = f"http://127.0.0.1:{port}"
        admin = f"http://127.0.0.1:{admin_port}" if admin_port else base
        try:
            await wait_http(base + "/healthz", proc, timeout_s=60)
            async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as http:  # cookies for 127.0.0.1
                steps: list[Callable[[], Awaitable[None]]] = [
                    lambda: login_flood(run, http, base, admin),
                    lambda: tenant_rules(run, http, base, up, evil),
                    lambda: invalid_unicode(run, http, base, up, acme),
                    lambda: secrets_in_logs(run, base, acme, log_path),
                    lambda: request_ids(run, http, base, acme, evil),
                    lambda: unicode_tricks(run, http, base, up, acme),
                    lambda: listeners(run, http, base, admin if admin_port else None),
                ]
                for step in steps:
                    await asyncio.wait_for(step(), 60)
            data_at_rest(run, workdir)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            await runner.cleanup()
    rows: dict[int, dict[str, Any]] = {
        cls: {"class": name, "attempts": len(run.results[cls]), "held": sum(run.results[cls]),
              "note": run.notes.get(cls, "") if run.results[cls] else "not run"}
        for cls, name in CLASSES.items()}
    report: dict[str, Any] = {"when": time.strftime("%Y-%m-%d"), "classes": rows,
                              "attempts": sum(r["attempts"] for r in rows.values()),
                              "held": sum(r["held"] for r in rows.values())}
    print("| class | attempts | held |\n|---|---|---|")
    for cls, row in rows.items():
        shown = f"{row['held']}/{row['attempts']}" if row["attempts"] else "not run"
        print(f"| {cls}. {row['class']} | {row['attempts']} | {shown} |")
    print(json.dumps(report, indent=2))
    return report


def start(cfg_path: Path, workdir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """`warden serve` at DEBUG, its output in a file this run greps for secrets (class 4)."""
    with log_path.open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", "proxy", "--log-level", "debug", "serve", "--config",
                                 str(cfg_path)], cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the result here")
    out = parser.parse_args().json
    report = asyncio.run(main_async())
    if out is not None:
        out.write_text(json.dumps(report, indent=2) + "\n")
    sys.exit(0 if report["held"] == report["attempts"] else 1)


if __name__ == "__main__":
    main()
