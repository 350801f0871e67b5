"""Frames between Warden's processes on one host: a length, a kind, and a marshal payload.

marshal rather than JSON or pickle: every process of a Warden is the same interpreter (one
install), so the format always matches; it is several times faster than `json` on rows (tuples,
dicts, strings, numbers), which matters on a proxy worker's loop; and loading it runs no code
(pickle would). The sockets live in a 0700 directory, or beside the chDB directory and 0600, so
only the user who runs Warden reaches them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import marshal
import struct
from typing import Any

HEADER = struct.Struct(">IB")
MAX_FRAME = 256 << 20  # a spooled batch of 20,000 rows is a few MiB; anything this big is a bug

# Kinds. Worker -> telemetry process: HELLO(prefix), ROWS((epoch, [(table, row), ...])), CLOSE(epoch),
# BATCH((req, table, names, columns, token)), QUERY((req, sql, fmt)), METRICS(req), PING(req).
# Telemetry process -> worker: ACK(epoch), REPLY((req, ok, value)).
HELLO, ROWS, CLOSE, BATCH, QUERY, METRICS, PING, ACK, REPLY = range(1, 10)
# Worker <-> supervisor (proxy/governance/shared.py): requests and replies share REPLY's shape;
# ABUSE_CHANGE is the supervisor's push, RELOAD a worker's ask that its siblings reload too; BUDGET
# charges (a request) and settles (one-way), BUDGET_SETTLED the supervisor's answer to a settle.
ADMIT, SETTLE, STATUS, READY, ABUSE, ABUSE_CHANGE, RELOAD, BUDGET, BUDGET_SETTLED = range(20, 29)


class FrameError(Exception):
    """A frame that cannot be read: the connection is closed, never guessed at."""


def frame(kind: int, body: Any) -> bytes:
    payload = marshal.dumps(body)
    return HEADER.pack(len(payload), kind) + payload


def rows_frame(epoch: int, rows: list[tuple[str, Any]]) -> bytes:
    """Rows as they were emitted; a row holding a value marshal cannot carry is sent as its JSON form."""
    try:
        return frame(ROWS, (epoch, rows))
    except ValueError:
        return frame(ROWS, (epoch, [(table, plain(row)) for table, row in rows]))


def plain(row: Any) -> Any:
    """What `json` makes of a row (`default=str`), with a tuple row kept a tuple (the writer tells them apart)."""
    value = json.loads(json.dumps(row, default=str))
    return tuple(value) if isinstance(row, tuple) else value


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, Any]:
    """The next frame; IncompleteReadError at the end of the stream."""
    length, kind = HEADER.unpack(await reader.readexactly(HEADER.size))
    if length > MAX_FRAME:
        raise FrameError(f"a frame of {length} bytes (at most {MAX_FRAME})")
    payload = await reader.readexactly(length)
    try:
        return kind, marshal.loads(payload)
    except (ValueError, EOFError, TypeError) as exc:
        raise FrameError(f"a frame of kind {kind} does not decode: {exc}") from exc


class Link:
    """One client connection: requests answered by REPLY frames (matched by id), one-way frames, and
    the peer's own frames (an ACK) handed to `on_frame`. It owns its reader task; when the stream
    ends every waiting request fails with ConnectionError and `on_lost` hears why, once."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 on_frame: Any = None, on_lost: Any = None) -> None:
        self._reader = reader
        self._writer = writer
        self._on_frame = on_frame
        self._on_lost = on_lost
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._next = 0
        self.open = True
        self._task = asyncio.create_task(self._read(), name="warden-link")

    @classmethod
    async def connect(cls, path: str, on_frame: Any = None, on_lost: Any = None,
                      timeout_s: float = 2.0) -> Link:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path, limit=MAX_FRAME), timeout_s)
        return cls(reader, writer, on_frame, on_lost)

    def send(self, kind: int, body: Any) -> None:
        self.send_bytes(frame(kind, body))

    def send_bytes(self, data: bytes) -> None:
        if not self.open:
            raise ConnectionError("the link is closed")
        self._writer.write(data)

    async def request(self, kind: int, body: tuple[Any, ...], timeout_s: float | None = None) -> Any:
        """Send `(id, *body)` and wait for its REPLY; a refused request raises RuntimeError with the peer's reason."""
        self._next += 1
        req = self._next
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[req] = future
        try:
            self.send(kind, (req, *body))
            ok, value = await asyncio.wait_for(future, timeout_s)
        finally:
            self._waiting.pop(req, None)
        if not ok:
            raise RuntimeError(str(value))
        return value

    async def _read(self) -> None:
        reason: BaseException = ConnectionError("the peer closed the connection")
        try:
            while True:
                kind, body = await read_frame(self._reader)
                if kind == REPLY:
                    future = self._waiting.get(body[0])
                    if future is not None and not future.done():
                        future.set_result((body[1], body[2]))
                elif self._on_frame is not None:
                    self._on_frame(kind, body)
        except (asyncio.IncompleteReadError, ConnectionError, FrameError, OSError) as exc:
            if not isinstance(exc, asyncio.IncompleteReadError):
                reason = exc
        finally:
            self._lost(reason)

    def _lost(self, reason: BaseException) -> None:
        if not self.open:
            return
        self.open = False
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError(f"the link was lost: {reason}"))
        self._writer.close()
        if self._on_lost is not None:
            self._on_lost(reason)

    async def close(self) -> None:
        self._on_lost = None  # a close we asked for is not a loss
        self._lost(ConnectionError("closed"))
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


class Peer:
    """The server's side of one connection: replies and pushes, dropped once the peer is gone."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    def send(self, kind: int, body: Any) -> None:
        if not self.writer.is_closing():
            self.writer.write(frame(kind, body))

    def reply(self, req: int, ok: bool, value: Any) -> None:
        self.send(REPLY, (req, ok, value))
