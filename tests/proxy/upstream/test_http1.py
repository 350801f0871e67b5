"""The relay's HTTP/1.1 client against scripted raw-socket backends, on asyncio's loop and on uvloop.

Each scenario runs under both loops because production runs uvloop and the in-process proxy
tests run asyncio's: transports differ between the two (uvloop's do not subclass asyncio's).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop
from multidict import CIMultiDict

from proxy.upstream.http1 import (
    HIGH_WATER,
    BadResponse,
    ConnectFailed,
    Disconnected,
    Http1Client,
    ReadTimeout,
    origin_of,
    request_head,
)
from tests.support.llama import free_port
from tests.support.tls import client_context, self_signed, server_context

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 2\r\nX-Up: 1\r\n\r\n{}"


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, None]], None]:
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def runner(scenario: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=factory) as loop:
            loop.run(asyncio.wait_for(scenario, 20))

    return runner


class Backend:
    """A raw TCP server running `handler` per connection; counts connections and keeps what it read."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Backend:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()
            self.closed.set()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        raw = head + await reader.readexactly(length)
        self.requests.append(raw)
        return raw


def client(tls: ssl.SSLContext | None = None, **kw: float) -> Http1Client:
    return Http1Client(connect_timeout_s=kw.get("connect", 2.0), read_timeout_s=kw.get("read", 5.0),
                       keepalive_s=kw.get("keepalive", 30.0), tls=tls)


def headers(**items: str) -> CIMultiDict[str]:
    return CIMultiDict(items)


def test_request_bytes_answer_head_and_keep_alive_reuse(run: Callable[..., None]) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await backend.read_request(reader)
                writer.write(OK)

        async with Backend(handler) as backend:
            c = client()
            for _ in range(3):
                async with await c.request("POST", backend.url + "/", "/v1/chat?x=1", headers(Authorization="k"),
                                           b'{"a":1}') as resp:
                    assert (resp.status, resp.reason) == (200, "OK")
                    assert resp.content_type == "application/json"
                    assert resp.content_length == 2 and resp.headers["x-up"] == "1"
                    assert await resp.read() == b"{}"
            assert backend.connections == 1 and c.idle_count() == 1
            host = backend.url.removeprefix("http://")
            assert backend.requests[0] == (f"POST /v1/chat?x=1 HTTP/1.1\r\nHost: {host}\r\nAuthorization: k\r\n"
                                           'Content-Length: 7\r\n\r\n{"a":1}').encode()
            # A backend under a path prefix gets the request's path under it, on the same connection.
            async with await c.request("GET", backend.url + "/team-a/", "/v1/models", headers(), b"") as resp:
                await resp.read()
            assert backend.requests[-1].startswith(b"GET /team-a/v1/models HTTP/1.1\r\n")
            assert backend.connections == 1
            await c.close()
            assert c.idle_count() == 0

    run(scenario())


def test_a_chunked_stream_arrives_piece_by_piece_then_the_connection_is_reused(run: Callable[..., None]) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await backend.read_request(reader)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
                for i in range(3):
                    data = f"data: {i}\n\n".encode()
                    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                    await writer.drain()
                    await asyncio.sleep(0.05)
                writer.write(b"0\r\n\r\n")

        async with Backend(handler) as backend:
            c = client()
            for _ in range(2):
                async with await c.request("POST", backend.url, "/s", headers(), b"{}") as resp:
                    assert resp.content_type == "text/event-stream" and resp.content_length is None
                    got = [chunk async for chunk in resp.chunks()]
                assert got == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]
            assert backend.connections == 1

    run(scenario())


def test_a_body_ended_by_the_close_is_whole_and_the_connection_is_not_reused(run: Callable[..., None]) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await backend.read_request(reader)
            writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil ")
            await writer.drain()
            writer.write(b"the close")

        async with Backend(handler) as backend:
            c = client()
            for _ in range(2):
                async with await c.request("GET", backend.url, "/", headers(), b"") as resp:
                    assert await resp.read() == b"until the close"
            assert backend.connections == 2
            assert b"Content-Length" not in backend.requests[0]  # a GET without a body declares none

    run(scenario())


def test_a_reused_connection_closed_before_answering_is_stale_a_fresh_one_is_not(run: Callable[..., None]) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await backend.read_request(reader)
            if backend.connections == 1:
                writer.write(OK)
                await backend.read_request(reader)  # the second request on this connection: no answer

        async with Backend(handler) as backend:
            c = client()
            async with await c.request("POST", backend.url, "/", headers(), b"x") as resp:
                await resp.read()
            with pytest.raises(Disconnected) as stale:
                await c.request("POST", backend.url, "/", headers(), b"x")
            assert stale.value.stale
            with pytest.raises(Disconnected) as fresh:
                await c.request("POST", backend.url, "/", headers(), b"x", fresh=True)
            assert not fresh.value.stale
            assert backend.connections == 2

    run(scenario())


def test_a_silent_backend_times_out_and_a_refused_connect_fails(run: Callable[..., None]) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await backend.read_request(reader)
            await reader.read()  # never answers

        async with Backend(handler) as backend:
            c = client(read=0.2)
            started = asyncio.get_running_loop().time()
            with pytest.raises(ReadTimeout) as timeout:
                await c.request("POST", backend.url, "/", headers(), b"x")
            assert isinstance(timeout.value, TimeoutError)
            assert 0.15 < asyncio.get_running_loop().time() - started < 2
            await asyncio.wait_for(backend.closed.wait(), 2)  # the connection was closed, not left open
        with pytest.raises(ConnectFailed, match="refused"):
            await c.request("POST", f"http://127.0.0.1:{free_port()}", "/", headers(), b"x")

    run(scenario())


def test_garbage_is_a_bad_response_and_a_cut_body_is_a_disconnect(run: Callable[..., None]) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await backend.read_request(reader)
            if backend.connections == 1:
                writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")

        async with Backend(handler) as backend:
            c = client()
            with pytest.raises(BadResponse):
                await c.request("GET", backend.url, "/", headers(), b"")
            async with await c.request("GET", backend.url, "/", headers(), b"") as resp:
                with pytest.raises(Disconnected) as cut:
                    await resp.read()
            assert not cut.value.stale
            assert c.idle_count() == 0

    run(scenario())


def test_a_slow_reader_pauses_the_backend_and_loses_nothing(run: Callable[..., None]) -> None:
    size = 8 * HIGH_WATER

    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await backend.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            for i in range(size // 1024):
                writer.write(bytes([i % 251]) * 1024)
                await writer.drain()

        async with Backend(handler) as backend:
            c = client()
            async with await c.request("GET", backend.url, "/", headers(), b"") as resp:
                await asyncio.sleep(0.5)  # the backend keeps sending while nobody reads
                conn = resp._conn
                assert conn._paused and conn._buffered < 2 * HIGH_WATER
                body = await resp.read()
            assert body == b"".join(bytes([i % 251]) * 1024 for i in range(size // 1024))

    run(scenario())


def test_head_interim_answers_and_leaving_early(run: Callable[..., None]) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                raw = await backend.read_request(reader)
                if raw.startswith(b"HEAD"):
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n")
                elif raw.startswith(b"PUT"):
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")

        async with Backend(handler) as backend:
            c = client()
            async with await c.request("HEAD", backend.url, "/", headers(), b"") as resp:
                assert resp.content_length == 5000 and await resp.read() == b""
            async with await c.request("PUT", backend.url, "/", headers(), b"x") as resp:
                assert resp.status == 200 and await resp.read() == b"{}"
            async with await c.request("GET", backend.url, "/", headers(), b"") as resp:
                async for chunk in resp.chunks():
                    assert chunk == b"abc"
                    break  # leave before the end: the connection is closed, not pooled
            assert c.idle_count() == 0
            assert backend.connections == 2  # HEAD's connection closed; PUT's reused by the GET, then closed

    run(scenario())


def test_an_https_backend_is_verified_and_its_connection_reused(run: Callable[..., None], tmp_path: Path) -> None:
    cert = self_signed(tmp_path)

    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await backend.read_request(reader)
                writer.write(OK)
                await writer.drain()

        async with Backend(handler, tls=server_context(cert)) as backend:
            trusting = client(client_context(cert))
            for _ in range(2):
                async with await trusting.request("POST", backend.url, "/v1/x", headers(), b'{"a":1}') as resp:
                    assert resp.status == 200 and await resp.read() == b"{}"
            assert backend.connections == 1 and backend.requests[1].endswith(b'{"a":1}')
            await trusting.close()
            # The system's trust store does not know this certificate: refused, and the log says why.
            with pytest.raises(ConnectFailed, match=r"TLS handshake with 127\.0\.0\.1:[0-9]+ failed: .*certificate"):
                await client().request("GET", backend.url, "/", headers(), b"")

    run(scenario())


def test_idle_connections_expire() -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await backend.read_request(reader)
                writer.write(OK)

        async with Backend(handler) as backend:
            c = client(keepalive=0.1)
            for _ in range(2):
                async with await c.request("GET", backend.url, "/", headers(), b"") as resp:
                    await resp.read()
                await asyncio.sleep(0.2)
            assert backend.connections == 2

    asyncio.run(scenario())


def test_crlf_in_a_header_is_refused_and_origins_parse() -> None:
    with pytest.raises(ValueError, match="CR, LF"):
        request_head("GET", "/", "h", headers(X="a\r\nInjected: 1"), 0)
    with pytest.raises(ValueError, match="CR, LF"):
        request_head("GET", "/", "h", headers(X="a\nb"), 0)
    assert origin_of("http://10.0.0.5:8000") == (("http", "10.0.0.5", 8000), "10.0.0.5:8000", "")
    assert origin_of("https://api.example.com") == (("https", "api.example.com", 443), "api.example.com", "")
    assert origin_of("http://[::1]:9000/x/") == (("http", "::1", 9000), "[::1]:9000", "/x")
