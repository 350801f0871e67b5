"""Enough of ClickHouse's HTTP interface, in aiohttp, to run clickhouse-connect's async client on chDB.

No modern ClickHouse server installs on these machines, so this stands in for one: every
statement runs on the real engine (chDB, in this process) with the settings the client sent
(the deduplication token among them), so SQL and insert semantics are ClickHouse's own. Only
the transport is imitated: query text from the URL and/or body, `INSERT ... FORMAT Native` with
the data after the first line, compressed bodies, `param_*` binds, errors as HTTP 500 with
`X-ClickHouse-Exception-Code`.

Faults on demand: `go_down()` closes the port (connection refused); for inserts, `delay_s`
answers late and `hang` never answers, both after applying the rows, like a server whose reply
is lost.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
import threading
from typing import Any

import chdb
from aiohttp import web

TRANSPORT = {
    "query", "database", "default_format", "session_id", "session_timeout", "session_check", "query_id",
    "quota_key", "compress", "decompress", "client_protocol_version", "wait_end_of_query", "buffer_size",
    "enable_http_compression", "send_progress_in_http_headers", "http_headers_progress_interval_ms", "role",
    "user", "password",
}
TRAILING_FORMAT = re.compile(r"\s+FORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
INSERT_HEAD = re.compile(rb"\s*INSERT\s[^\n]*?FORMAT\s+\w+[ \t]*\r?\n", re.IGNORECASE)


def _decompress(data: bytes, encoding: str | None) -> bytes:
    if not encoding or encoding == "identity":
        return data
    if encoding == "lz4":
        import lz4.frame

        return bytes(lz4.frame.decompress(data))
    if encoding == "zstd":
        from clickhouse_connect.driver.compression import _zstd_decompress

        return bytes(_zstd_decompress(data))
    if encoding == "gzip":
        import gzip

        return gzip.decompress(data)
    raise ValueError(f"unsupported Content-Encoding {encoding}")


class FakeClickHouse:
    def __init__(self, chdb_path: str) -> None:
        self.path = chdb_path
        self._lock = threading.Lock()
        self.inserts = 0  # INSERT statements applied
        self.delay_s = 0.0
        self.hang = False
        self.applied = asyncio.Event()  # set after each applied insert
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeClickHouse:
        app = web.Application(client_max_size=256 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        await self.go_up()
        return self

    async def go_up(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        self.port = self._runner.addresses[-1][1]

    async def go_down(self) -> None:
        """Close the listening socket and every open connection: clients see refused connections."""
        assert self._site is not None and self._runner is not None
        await self._site.stop()
        server = self._runner.server
        if server is not None:
            for conn in list(server.connections):
                conn.force_close()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _run(
        self, sql: str, database: str | None, settings: dict[str, str], params: dict[str, str], data: bytes | None
    ) -> tuple[bytes, str]:
        match = TRAILING_FORMAT.search(sql)
        fmt = match.group(1) if match else "TabSeparated"
        if match:
            sql = sql[: match.start()]
        with self._lock:
            conn = chdb.connect(self.path)  # type: ignore[no-untyped-call]  # a fresh handle per request: SET must not outlive it
            tmp = None
            try:
                if database:
                    conn.query(f"USE `{database}`")
                for key, value in settings.items():
                    conn.query(f"SET {key} = '{value}'")
                if data is not None:
                    with tempfile.NamedTemporaryFile(delete=False, suffix=".native") as f:
                        f.write(data)
                        tmp = f.name
                    sql, fmt = f"{sql} FROM INFILE '{tmp}' FORMAT {fmt}", "TabSeparated"
                result = conn.query(sql, fmt, params=params)
                return bytes(result.bytes() or b""), fmt
            finally:
                conn.close()
                if tmp:
                    os.unlink(tmp)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/ping":
            return web.Response(text="Ok.\n")
        query: dict[str, Any] = dict(request.query)
        if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            query.update({k: str(v) for k, v in (await request.post()).items()})
            body = b""
        else:
            body = _decompress(await request.read(), request.headers.get("Content-Encoding"))
        settings = {k: v for k, v in query.items() if k not in TRANSPORT and not k.startswith("param_")}
        params = {k[6:]: v for k, v in query.items() if k.startswith("param_")}
        head = INSERT_HEAD.match(body) if "query" not in query else None
        data: bytes | None = None
        if query.get("query", "").lstrip().upper().startswith("INSERT") and body:
            sql, data = query["query"], body
        elif head:
            sql, data = head.group(0).decode().strip(), body[head.end():]
        else:
            sql = "\n".join(p for p in (query.get("query", ""), body.decode()) if p)
        try:
            out, fmt = await asyncio.to_thread(self._run, sql, query.get("database"), settings, params, data)
        except Exception as exc:
            code = re.search(r"Code: (\d+)", str(exc))
            return web.Response(status=500, text=str(exc),
                                headers={"X-ClickHouse-Exception-Code": code.group(1) if code else "1"})
        if data is not None:
            self.inserts += 1
            self.applied.set()
            if self.hang:
                await asyncio.Event().wait()  # applied, never answered; the client's cancel ends it
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        return web.Response(body=out, headers={
            "X-ClickHouse-Format": fmt, "X-ClickHouse-Timezone": "UTC",
            "X-ClickHouse-Summary": json.dumps({"written_rows": "0"}),
        })
