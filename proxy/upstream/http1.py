"""A lean HTTP/1.1 client for the relay's one job: send a request to a backend, stream its answer back.

aiohttp's ClientSession is general: cookies, redirects, tracing hooks, proxies, a URL object and
a StreamReader per request. py-spy put it at ~40% of a minimal aiohttp relay's CPU per request,
the largest single cost in Warden's path. The relay needs none of that: it has the body in
hand, forwards headers it already filtered, and never follows redirects. This client writes
the request in one `write`, parses the answer with llhttp (httptools), keeps idle connections
per origin for reuse, and exposes only what the relay reads.

Flow control: when the client reading our relay is slower than the backend, at most
`HIGH_WATER` bytes wait here before the backend's socket stops being read.

Failure kinds (the relay's retry rule depends on them):
- `ConnectFailed` (`ConnectTimeout`): no connection was made; nothing reached the backend.
- `Disconnected`: the connection closed or reset before the answer ended. `stale` says it was
  a reused idle connection that died before answering, the one case worth one resend.
- `ReadTimeout`: the backend was silent longer than the read timeout (a `TimeoutError`).
- `BadResponse`: the backend's bytes are not HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import collections
import os
import ssl
import time
from types import TracebackType
from typing import cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
MAX_IDLE_PER_ORIGIN = 256
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
Origin = tuple[str, str, int]  # scheme, host, port


class UpstreamClientError(Exception):
    """A failure talking to a backend."""


class ConnectFailed(UpstreamClientError):
    pass


class ConnectTimeout(ConnectFailed, TimeoutError):
    pass


class Disconnected(UpstreamClientError):
    def __init__(self, message: str, *, stale: bool = False) -> None:
        super().__init__(message)
        self.stale = stale


class ReadTimeout(UpstreamClientError, TimeoutError):
    pass


class BadResponse(UpstreamClientError):
    pass


def origin_of(url: str) -> tuple[Origin, str, str]:
    """(scheme, host, port), the `Host` header and the path prefix of a backend URL.

    A backend behind a path (`https://gw.example.com/team-a`) gets each request's path under that
    prefix, as the health probes and model listings do.
    """
    scheme, _, rest = url.partition("://")
    hostport, slash, path = rest.partition("/")
    prefix = (slash + path).rstrip("/")
    default = 443 if scheme == "https" else 80
    if hostport.startswith("["):  # an IPv6 literal
        host, _, tail = hostport[1:].partition("]")
        port = int(tail[1:]) if tail.startswith(":") else default
    else:
        host, _, port_text = hostport.partition(":")
        port = int(port_text) if port_text else default
    return (scheme, host, port), hostport, prefix


def request_head(method: str, target: str, host: str, headers: CIMultiDict[str], body_size: int) -> bytes:
    """The request line and headers in one buffer; a CR, LF or NUL anywhere is refused, not sent."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if body_size or method not in _NO_BODY_METHODS:
        lines.append(f"Content-Length: {body_size}")
    text = "\n".join(lines)
    if "\r" in text or "\0" in text or text.count("\n") != len(lines) - 1:
        raise ValueError("request line or header holds a CR, LF or NUL")
    return (text.replace("\n", "\r\n") + "\r\n\r\n").encode("utf-8", "surrogateescape")


class UpstreamResponse:
    """The answer's head, and its body as it arrives; `async with` returns the connection when done."""

    __slots__ = ("_conn", "content_length", "content_type", "headers", "reason", "status")

    def __init__(self, conn: _Connection, status: int, reason: str, headers: CIMultiDictProxy[str]) -> None:
        self._conn = conn
        self.status = status
        self.reason = reason
        self.headers = headers
        self.content_type = headers.get("Content-Type", "application/octet-stream").split(";", 1)[0].strip().lower()
        length = headers.get("Content-Length")
        self.content_length = int(length) if length is not None and length.isdigit() else None

    async def read(self) -> bytes:
        conn = self._conn
        parts = []
        while True:
            chunk = conn.take()
            if chunk:
                parts.append(chunk)
            elif conn.done:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            else:
                await conn.wait()

    def chunks(self) -> _Chunks:
        """Whatever has arrived since the last step, joined; ends at the end of the body."""
        return _Chunks(self._conn)

    async def __aenter__(self) -> UpstreamResponse:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._conn.release()


class _Chunks:
    """An iterator object rather than an async generator: a relay that stops early leaves nothing to finalise."""

    __slots__ = ("_conn",)

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        while True:
            chunk = conn.take()
            if chunk:
                return chunk
            if conn.done:
                raise StopAsyncIteration
            await conn.wait()


class _Connection(asyncio.Protocol):
    """One keep-alive connection, parsing one answer at a time."""

    def __init__(self, client: Http1Client, origin: Origin) -> None:
        self.client = client
        self.origin = origin
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.reused = False
        self.idle_since = 0.0
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.head: UpstreamResponse | None = None
        self.done = False
        self.keep_alive = False
        self.error: UpstreamClientError | None = None
        self.head_only = False
        self._skip_interim = False
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None

    # -- the caller's side --------------------------------------------------------------------

    async def send(self, data: bytes, head_only: bool) -> UpstreamResponse:
        assert self.transport is not None
        self._reset()
        self.head_only = head_only
        self.transport.write(data)
        while self.head is None:
            if self.error is not None:
                raise self.error
            await self.wait()
        return self.head

    def take(self) -> bytes:
        if self.error is not None and not self._body:
            raise self.error
        if not self._body:
            return b""
        chunk = self._body.popleft() if len(self._body) == 1 else b"".join(self._body)
        self._body.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    async def wait(self) -> None:
        """Until more arrives, the answer ends or fails, or the backend is silent too long."""
        waiter = self._waiter = self.loop.create_future()
        timer = self.loop.call_later(self.client.read_timeout_s, self._timed_out, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def release(self) -> None:
        """Back to the pool if the answer was read to its end on a reusable connection; else closed."""
        if self.done and self.keep_alive and self.error is None and not self.closed:
            self.reused = True
            self.client.put_idle(self)
        else:
            self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _timed_out(self, waiter: asyncio.Future[None]) -> None:
        self._fail(ReadTimeout(f"no data from the backend for {self.client.read_timeout_s:g} s"))
        self.close()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, error: UpstreamClientError) -> None:
        if self.error is None and not self.done:
            self.error = error
        self._wake()

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            raise  # our own bug: let asyncio log it rather than blame the backend
        except httptools.HttpParserError as exc:
            self._fail(BadResponse(f"backend sent bytes that are not HTTP/1.1: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.head is not None and not self.done and exc is None and self._until_close():
            self.done = True  # a body delimited by the close itself
            self._wake()
            return
        reason = f"{type(exc).__name__}: {exc}" if exc else "closed by the backend"
        if self.head is None:
            self._fail(Disconnected(f"connection lost before the answer ({reason})", stale=self.reused))
        else:
            self._fail(Disconnected(f"connection lost mid-answer ({reason})"))

    def _until_close(self) -> bool:
        assert self.head is not None
        chunked = "chunked" in self.head.headers.get("Transfer-Encoding", "").lower()
        return self.head.content_length is None and not chunked

    # -- httptools callbacks -------------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            self._skip_interim = True
            self._reason, self._headers = b"", []
            return
        headers: CIMultiDict[str] = CIMultiDict(
            (n.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape")) for n, v in self._headers
        )
        self.keep_alive = self.parser.should_keep_alive() and not self.head_only
        self.head = UpstreamResponse(self, status, self._reason.decode("utf-8", "replace"), CIMultiDictProxy(headers))
        if self.head_only:
            self.done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.head_only:
            return
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._skip_interim:
            self._skip_interim = False
            return
        self.keep_alive = self.keep_alive and self.parser.should_keep_alive()
        self.done = True
        self._wake()


class Http1Client:
    """Pooled HTTP/1.1 connections to backends; one per request in flight, idle ones kept for reuse."""

    def __init__(self, connect_timeout_s: float, read_timeout_s: float, keepalive_s: float = 30.0,
                 tls: ssl.SSLContext | None = None) -> None:
        """`tls` verifies https backends; by default the system's trust store (SSL_CERT_FILE applies)."""
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.keepalive_s = keepalive_s
        self._idle: dict[Origin, collections.deque[_Connection]] = {}
        self._ssl = tls
        self._swept = 0.0
        self._closed = False

    async def request(self, method: str, url: str, target: str, headers: CIMultiDict[str],
                      body: bytes, *, fresh: bool = False) -> UpstreamResponse:
        """Send `method target` to the backend at `url`; returns once the answer's head is in.

        `fresh` skips the idle connections: for a resend after a reused one turned out closed.
        """
        origin, host, prefix = origin_of(url)
        data = request_head(method, prefix + target, host, headers, len(body))
        if body:
            data += body
        conn = (None if fresh else self._idle_connection(origin)) or await self._connect(origin)
        try:
            return await conn.send(data, head_only=method == "HEAD")
        except BaseException:
            conn.close()
            raise

    def put_idle(self, conn: _Connection) -> None:
        idle = self._idle.setdefault(conn.origin, collections.deque())
        if self._closed or len(idle) >= MAX_IDLE_PER_ORIGIN:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def idle_count(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    async def close(self) -> None:
        """Closes idle connections; ones in use close as their requests end."""
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        await asyncio.sleep(0)  # let the transports' close callbacks run

    def _idle_connection(self, origin: Origin) -> _Connection | None:
        """The most recently used live connection (LIFO keeps the pool small); expired ones are closed."""
        now = time.monotonic()  # as put_idle stamps it; cheaper than looking up the running loop
        if now - self._swept > 1.0:
            self._sweep(now)
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self.keepalive_s:
                return conn
            conn.close()
        return None

    def _sweep(self, now: float) -> None:
        """Drop connections the backend closed or that idled past `keepalive_s` (the pool stays bounded)."""
        self._swept = now
        for origin, idle in list(self._idle.items()):
            live: collections.deque[_Connection] = collections.deque()
            for conn in idle:
                if conn.closed or now - conn.idle_since >= self.keepalive_s:
                    conn.close()
                else:
                    live.append(conn)
            if live:
                self._idle[origin] = live
            else:
                del self._idle[origin]

    async def _connect(self, origin: Origin) -> _Connection:
        if self._closed:
            raise ConnectFailed("the client is closed")
        scheme, host, port = origin
        tls = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = self._ssl
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(lambda: _Connection(self, origin), host, port, ssl=tls)
        except TimeoutError as exc:
            raise ConnectTimeout(f"connect to {host}:{port} timed out after {self.connect_timeout_s:g} s") from exc
        except ssl.SSLError as exc:  # an OSError too, but its errno would name the wrong cause
            why = getattr(exc, "verify_message", None) or exc.reason or str(exc)
            raise ConnectFailed(f"TLS handshake with {host}:{port} failed: {why}") from exc
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ConnectFailed(f"cannot connect to {host}:{port}: {why}") from exc
        return conn
