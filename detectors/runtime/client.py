"""The proxy's side of the scanner socket: concurrent calls over one connection, matched by id.

When the connection drops (the scanner crashed or restarts) every pending call fails at once
with `ScannerUnavailable`, rather than waiting out its timeout; the next call reconnects.

Scans for the same task and priority made in the same event-loop turn are coalesced into one
frame and split back per caller. The scanner pays tens of microseconds of Python per frame
(decode, validate, reply), which capped it near 4,500 single-text scans/s on an H200 whose
model did 17,000 texts/s; one frame per loop turn makes that cost per burst, not per text,
and adds no wait: the frame leaves on the very next turn.

An address may name several scanner workers, comma-separated (`scanner.workers`): frames go to the
worker with the fewest frames in flight (one connection each), and a frame whose worker is
unreachable or died under it is sent to the next one, so a crashed worker costs a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors.runtime.protocol import (
    MAX_TEXTS_PER_CALL,
    DecodeError,
    FrameError,
    MetricsRequest,
    PingRequest,
    Priority,
    Reply,
    ScanRequest,
    Span,
    TaskInfo,
    decode_reply,
    encode,
    pack_tokens,
    read_frame,
    unpack_rows,
)

log = logging.getLogger("warden.scanner.client")


class ScannerError(Exception):
    """Base for every way a scan can fail; detectors map these to fail-open or fail-closed."""


class ScannerUnavailable(ScannerError):
    pass


class ScannerTimeout(ScannerError):
    pass


class ScannerOverloaded(ScannerError):
    pass


class ScanFailed(ScannerError):
    pass


@dataclass(frozen=True, slots=True)
class ScanResult:
    labels: list[str]
    scores: np.ndarray[Any, Any] | None = None
    vectors: np.ndarray[Any, Any] | None = None
    spans: list[list[Span]] | None = None

    def rows(self, start: int, stop: int) -> ScanResult:
        """The results of texts[start:stop] of the call that produced this one."""
        return ScanResult(labels=self.labels,
                          scores=None if self.scores is None else self.scores[start:stop],
                          vectors=None if self.vectors is None else self.vectors[start:stop],
                          spans=None if self.spans is None else self.spans[start:stop])


@dataclass(slots=True)
class _Waiter:
    texts: list[str]
    future: asyncio.Future[ScanResult]
    timeout_s: float
    deadline: float


@dataclass(slots=True)
class _Pack:
    """Scans for one task and priority waiting for the next loop turn, then for their frame's reply.

    One timer per pack, not one `asyncio.timeout` per call: callers of a pack nearly always share a
    timeout and so a deadline (within the loop turn), and a timer per call was a fifth of the
    client's CPU per scan.
    """

    waiters: list[_Waiter] = field(default_factory=list)
    size: int = 0
    timer: asyncio.TimerHandle | None = None


class ScannerClient:
    def __init__(self, address: str, call_timeout_s: float = 5.0, connect_timeout_s: float = 1.0,
                 coalesce: bool = True) -> None:
        self.address = address
        self.call_timeout_s = call_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.coalesce = coalesce
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._connect_lock = asyncio.Lock()
        self._packs: dict[tuple[str, Priority], _Pack] = {}
        self._senders: set[asyncio.Task[None]] = set()
        addresses = address.split(",")
        self._workers = [ScannerClient(a, call_timeout_s, connect_timeout_s, coalesce=False)
                         for a in addresses] if len(addresses) > 1 else []
        self._turn = 0
        self._opened = 0

    @property
    def connections(self) -> int:
        """Connections opened so far (every worker's): a new one may reach a restarted scanner whose
        models, versions or prefilter differ, so what a caller learnt by `ping` is stale."""
        return sum(w.connections for w in self._workers) if self._workers else self._opened

    @property
    def connected(self) -> bool:
        if self._workers:
            return any(w.connected for w in self._workers)
        return self._writer is not None and not self._writer.is_closing()

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.address.startswith("tcp://"):
            host, _, port = self.address[len("tcp://"):].rpartition(":")
            return await asyncio.open_connection(host, int(port))
        return await asyncio.open_unix_connection(self.address.removeprefix("unix://"))

    async def _ensure_connected(self) -> asyncio.StreamWriter:
        async with self._connect_lock:
            if self._writer is not None and self.connected:
                return self._writer
            await self._drop(ScannerUnavailable("reconnecting"))
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    reader, writer = await self._open()
            except (OSError, TimeoutError) as exc:
                raise ScannerUnavailable(f"cannot reach the scanner at {self.address}: {exc}") from exc
            self._writer = writer
            self._opened += 1
            self._reader_task = asyncio.create_task(self._read_loop(reader), name="scanner-client-reader")
            return writer

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        reason = "scanner closed the connection"
        try:
            while (body := await read_frame(reader)) is not None:
                reply = decode_reply(body)
                future = self._pending.get(reply.id)
                if future is not None and not future.done():
                    future.set_result(reply)
        except (FrameError, ConnectionError, DecodeError) as exc:
            reason = f"scanner connection broke: {exc}"
        finally:
            self._fail_pending(ScannerUnavailable(reason))
            if self._writer is not None:
                self._writer.close()
            self._writer = None

    def _fail_pending(self, error: Exception) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)

    async def _drop(self, error: Exception) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
            self._reader_task = None
        self._fail_pending(error)
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def _call(self, message: ScanRequest | PingRequest | MetricsRequest, timeout_s: float | None) -> Reply:
        writer = await self._ensure_connected()
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[message.id] = future
        try:
            writer.write(encode(message))
            async with asyncio.timeout(timeout_s or self.call_timeout_s):
                await writer.drain()
                reply = await future
        except TimeoutError:
            raise ScannerTimeout(f"scanner did not answer within {timeout_s or self.call_timeout_s:g}s") from None
        except ConnectionError as exc:
            raise ScannerUnavailable(f"scanner connection broke: {exc}") from exc
        finally:
            del self._pending[message.id]
        if not reply.ok:
            kind = {"overloaded": ScannerOverloaded, "shutting_down": ScannerUnavailable}.get(reply.error or "",
                                                                                              ScanFailed)
            raise kind(f"{reply.error}: {reply.message}")
        return reply

    async def scan(self, task: str, texts: list[str], priority: Priority = "request",
                   timeout_s: float | None = None, tokens: Sequence[Sequence[int] | None] | None = None) -> ScanResult:
        """`tokens`: each text's token ids, made with a tokenizer of the task's fingerprint
        (`TaskInfo.tokenizer` in `ping()`), already truncated, special tokens included; None or
        empty for a text the scanner should tokenize. The scanner checks them against its
        vocabulary and `max_length`. A call with tokens is sent as its own frame."""
        if not texts:
            return ScanResult(labels=[], scores=np.zeros((0, 0), dtype=np.float32), vectors=None, spans=[])
        timeout = timeout_s or self.call_timeout_s
        if tokens is not None:
            if len(tokens) != len(texts):
                raise ValueError(f"tokens for {len(tokens)} texts, but {len(texts)} texts")
            packed = [pack_tokens(np.asarray(ids)) if ids is not None and len(ids) else b"" for ids in tokens]
            return await self._scan_frame(task, texts, priority, timeout, packed)
        if not self.coalesce or len(texts) >= MAX_TEXTS_PER_CALL:
            return await self._scan_frame(task, texts, priority, timeout)
        key = (task, priority)
        loop = asyncio.get_running_loop()
        pack = self._packs.get(key)
        if pack is None or pack.size + len(texts) > MAX_TEXTS_PER_CALL:
            if pack is not None:
                self._send_pack(key, pack)
            pack = self._packs[key] = _Pack()
            loop.call_soon(self._flush, key, pack)
        waiter = _Waiter(texts, loop.create_future(), timeout, loop.time() + timeout)
        pack.waiters.append(waiter)
        pack.size += len(texts)
        if pack.timer is None or waiter.deadline < pack.timer.when():
            self._arm(pack, waiter.deadline)
        return await waiter.future

    def _arm(self, pack: _Pack, when: float) -> None:
        if pack.timer is not None:
            pack.timer.cancel()
        pack.timer = asyncio.get_running_loop().call_at(when, self._expire, pack)

    def _expire(self, pack: _Pack) -> None:
        """Fail the callers whose deadline has come (within a millisecond); re-arm for the rest."""
        pack.timer = None
        now = asyncio.get_running_loop().time() + 0.001
        later = []
        for w in pack.waiters:
            if w.future.done():
                continue
            if w.deadline <= now:
                w.future.set_exception(ScannerTimeout(f"scanner did not answer within {w.timeout_s:g}s"))
            else:
                later.append(w.deadline)
        if later:
            self._arm(pack, min(later))

    def _flush(self, key: tuple[str, Priority], pack: _Pack) -> None:
        if self._packs.get(key) is pack:
            self._send_pack(key, pack)

    def _send_pack(self, key: tuple[str, Priority], pack: _Pack) -> None:
        del self._packs[key]
        sender = asyncio.create_task(self._send(key, pack), name="scanner-client-pack")
        self._senders.add(sender)
        sender.add_done_callback(self._senders.discard)

    async def _send(self, key: tuple[str, Priority], pack: _Pack) -> None:
        """One frame for every caller still waiting; each gets its own rows, or the frame's error."""
        try:
            await self._send_waiters(key, [w for w in pack.waiters if not w.future.done()])
        finally:
            if pack.timer is not None:
                pack.timer.cancel()

    async def _send_waiters(self, key: tuple[str, Priority], waiters: list[_Waiter]) -> None:
        if not waiters:  # callers that gave up cost no compute
            return
        texts = [text for w in waiters for text in w.texts]
        try:
            result = await self._scan_frame(key[0], texts, key[1], max(w.timeout_s for w in waiters))
        except BaseException as exc:  # every waiter hears of it; only cancellation goes further
            error = (exc if isinstance(exc, ScannerError) else ScannerUnavailable("client closed")
                     if isinstance(exc, asyncio.CancelledError) else ScanFailed(f"{type(exc).__name__}: {exc}"))
            for w in waiters:
                if not w.future.done():
                    w.future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for w in waiters:
            if not w.future.done():
                w.future.set_result(result.rows(start, start + len(w.texts)))
            start += len(w.texts)

    async def _spread_frame(self, task: str, texts: list[str], priority: Priority, timeout_s: float,
                            tokens: list[bytes] | None = None) -> ScanResult:
        """To the least busy worker (rotating on ties); to the next one when that one cannot answer."""
        count = len(self._workers)
        self._turn = (self._turn + 1) % count
        order = sorted(range(count), key=lambda k: (len(self._workers[k]._pending), (k - self._turn) % count))
        error: ScannerUnavailable | None = None
        for k in order:
            try:
                return await self._workers[k]._scan_frame(task, texts, priority, timeout_s, tokens)
            except ScannerUnavailable as exc:
                error = exc
        assert error is not None
        raise error

    async def _scan_frame(self, task: str, texts: list[str], priority: Priority, timeout_s: float,
                          tokens: list[bytes] | None = None) -> ScanResult:
        if self._workers:
            return await self._spread_frame(task, texts, priority, timeout_s, tokens)
        request = ScanRequest(id=next(self._ids), task=task, texts=texts, priority=priority, tokens=tokens)
        reply = await self._call(request, timeout_s)
        if reply.vectors is not None and reply.dim:
            return ScanResult(labels=[], vectors=unpack_rows(reply.vectors, reply.dim))
        if reply.spans is not None:
            spans = [[Span.model_construct(label=s[0], score=s[1], start=s[2], end=s[3], explanation=s[4]) for s in row]
                     for row in reply.spans]
            return ScanResult(labels=reply.labels or [], spans=spans)
        labels = reply.labels or []
        scores = unpack_rows(reply.scores or b"", reply.dim or len(labels) or 1).reshape(len(texts), -1)
        return ScanResult(labels=labels, scores=scores)

    async def ping(self, timeout_s: float | None = None) -> dict[str, TaskInfo]:
        """The tasks of the first worker that answers (every worker loads the same models)."""
        if self._workers:
            error: ScannerError | None = None
            for worker in self._workers:
                try:
                    return await worker.ping(timeout_s)
                except ScannerError as exc:
                    error = exc
            assert error is not None
            raise error
        reply = await self._call(PingRequest(id=next(self._ids)), timeout_s)
        return reply.tasks or {}

    async def metrics_text(self, timeout_s: float | None = None) -> str:
        """The scanner's metrics; of several workers, their samples added up (one scanner to a dashboard)."""
        if self._workers:
            texts = await asyncio.gather(*(w.metrics_text(timeout_s) for w in self._workers), return_exceptions=True)
            return merge_metrics([t for t in texts if isinstance(t, str)])
        reply = await self._call(MetricsRequest(id=next(self._ids)), timeout_s)
        return reply.text or ""

    async def close(self) -> None:
        for worker in self._workers:
            await worker.close()
        for pack in self._packs.values():
            if pack.timer is not None:
                pack.timer.cancel()
            for waiter in pack.waiters:
                if not waiter.future.done():
                    waiter.future.set_exception(ScannerUnavailable("client closed"))
        self._packs.clear()
        for sender in list(self._senders):
            sender.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        await self._drop(ScannerUnavailable("client closed"))


def merge_metrics(texts: list[str]) -> str:
    """Prometheus texts of the same families added sample by sample (counters, histograms, depths)."""
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, tuple[str, str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            _, _, samples = families.setdefault(family.name, (family.type, family.documentation, {}))
            for sample in family.samples:
                if sample.name.endswith("_created"):  # a start time: no sum of them means anything
                    continue
                key = (sample.name, tuple(sorted(sample.labels.items())))
                samples[key] = samples.get(key, 0.0) + sample.value
    lines = []
    for name, (kind, doc, samples) in families.items():
        if not samples:
            continue
        title = f"{name}_total" if kind == "counter" else name  # as prometheus_client writes them
        lines += [f"# HELP {title} {doc}", f"# TYPE {title} {kind}"]
        for (series, labels), value in samples.items():
            inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{series}{{{inner}}} {value!r}" if inner else f"{series} {value!r}")
    return "\n".join(lines) + "\n" if lines else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
