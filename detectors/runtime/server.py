"""The scanner process: owns the models and the device, serves scans over a local socket.

It listens only after every model has loaded and warmed up, so a successful ping means ready.
A connection multiplexes concurrent calls; a malformed message gets an `invalid` reply and the
connection stays usable, while broken framing closes that connection only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from detectors.runtime.batcher import PRIORITIES, MicroBatcher, Overloaded, ShuttingDown
from detectors.runtime.metrics import ScannerMetrics
from detectors.runtime.protocol import (
    DecodeError,
    ErrorKind,
    FrameError,
    MetricsRequest,
    PingRequest,
    Reply,
    ScanRequest,
    TaskInfo,
    decode_request,
    encode,
    is_json,
    pack_rows,
    parse_request_id,
    read_frame,
)
from detectors.runtime.runner import Runner
from detectors.runtime.settings import ScannerSettings

log = logging.getLogger("warden.scanner")
Send = Callable[[Reply, bool], Awaitable[None]]


class Scanner:
    def __init__(self, settings: ScannerSettings, runners: Mapping[str, Runner]) -> None:
        self.settings = settings
        self.runners = runners
        self.registry = CollectorRegistry()
        self.metrics = ScannerMetrics(self.registry)
        self.batchers = {task: MicroBatcher(runner, self.metrics, settings.torch_threads)
                         for task, runner in runners.items()}
        self.metrics.watch(self._depths, self._memory)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    def _depths(self) -> dict[tuple[str, str], int]:
        return {(t, p): b.depth(p) for t, b in self.batchers.items() for p in PRIORITIES}

    def _memory(self) -> dict[str, int]:
        return {t: int(r.memory_bytes()) if hasattr(r, "memory_bytes") else 0 for t, r in self.runners.items()}

    def task_info(self) -> dict[str, TaskInfo]:
        return {
            task: TaskInfo(kind=r.kind, output=r.output, labels=list(r.labels),  # type: ignore[arg-type]  # a str
                           dim=r.dim, device=str(r.device), dtype=r.dtype, model_version=r.version,
                           tokenizer=getattr(r, "tokenizer_id", ""), prefilter=getattr(r, "prefilter_id", ""))
            for task, r in self.runners.items()
        }

    async def start(self) -> str:
        for batcher in self.batchers.values():
            await batcher.start()
        if self.settings.tcp:
            host, _, port = self.settings.tcp.rpartition(":")
            self._server = await asyncio.start_server(self._on_connection, host or "127.0.0.1", int(port))
            bound = self._server.sockets[0].getsockname()
            address = f"tcp://{bound[0]}:{bound[1]}"
        else:
            path = self.settings.socket
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # a socket file left by a crashed scanner
            self._server = await asyncio.start_unix_server(self._on_connection, path)
            address = f"unix://{path}"
        log.info("scanner ready on %s with tasks %s", address, sorted(self.runners))
        return address

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for batcher in self.batchers.values():
            await batcher.stop()
        if self._server is not None:
            await self._server.wait_closed()
        if not self.settings.tcp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.settings.socket)

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        current = asyncio.current_task()
        assert current is not None
        self._connections.add(current)
        calls: set[asyncio.Task[None]] = set()

        async def send(reply: Reply, as_json: bool) -> None:
            writer.write(encode(reply, as_json))
            await writer.drain()

        try:
            while (body := await read_frame(reader)) is not None:
                as_json = is_json(body)
                try:
                    request = decode_request(body)
                except DecodeError as exc:
                    await send(Reply(id=parse_request_id(body), ok=False, error="invalid", message=str(exc)), as_json)
                    continue
                call = asyncio.create_task(self._serve(request, send, as_json))
                calls.add(call)
                call.add_done_callback(calls.discard)
        except FrameError as exc:
            log.warning("closing a scanner connection: %s", exc)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            writer.close()
            self._connections.discard(current)

    async def _serve(self, request: ScanRequest | PingRequest | MetricsRequest, send: Send, as_json: bool) -> None:
        with contextlib.suppress(ConnectionError):  # the caller hung up; nobody to tell
            await send(await self._answer(request), as_json)

    async def _answer(self, request: ScanRequest | PingRequest | MetricsRequest) -> Reply:
        if isinstance(request, PingRequest):
            return Reply(id=request.id, ok=True, tasks=self.task_info())
        if isinstance(request, MetricsRequest):
            return Reply(id=request.id, ok=True, text=generate_latest(self.registry).decode())
        batcher = self.batchers.get(request.task)
        if batcher is None:
            return Reply(id=request.id, ok=False, error="unknown_task",
                         message=f"no model for task {request.task!r}; tasks: {sorted(self.batchers)}")
        runner = batcher.runner
        if not request.texts:
            return Reply(id=request.id, ok=True, labels=list(runner.labels), scores=b"", dim=len(runner.labels))
        tokens = self._tokens(request)
        if isinstance(tokens, Reply):
            return tokens
        try:
            rows = await batcher.submit_work(request.texts, request.priority, tokens)
        except Overloaded as exc:
            return Reply(id=request.id, ok=False, error="overloaded", message=str(exc))
        except Exception as exc:  # the batch's error (BatchFailed) or the shutdown: this frame's answer
            kind: ErrorKind = "shutting_down" if isinstance(exc, ShuttingDown) else "failed"
            return Reply(id=request.id, ok=False, error=kind, message=str(exc))
        if runner.output == "spans":
            spans = [[(s.label, s.score, s.start, s.end, s.explanation) for s in row] for row in rows]
            return Reply(id=request.id, ok=True, labels=list(runner.labels), spans=spans)
        if runner.output == "vectors":
            return Reply(id=request.id, ok=True, vectors=pack_rows(rows), dim=rows.shape[1])
        return Reply(id=request.id, ok=True, labels=list(runner.labels), scores=pack_rows(rows), dim=rows.shape[1])

    def _tokens(self, request: ScanRequest) -> list[np.ndarray[Any, Any] | None] | Reply | None:
        """Token ids the caller sent, checked against this task's tokenizer and budget."""
        if request.tokens is None:
            return None
        runner = self.runners[request.task]
        limit = int(getattr(runner, "vocab_size", 0))
        if not limit or len(request.tokens) != len(request.texts):
            why = "token ids for every text" if limit else f"no token ids for task {request.task!r}"
            return Reply(id=request.id, ok=False, error="invalid", message=f"tokens: expected {why}")
        out: list[np.ndarray[Any, Any] | None] = []
        for raw in request.tokens:
            ids = np.frombuffer(raw, dtype="<i4") if len(raw) % 4 == 0 else None
            if ids is not None and ids.size and (ids.size > runner.settings.max_length or ids.min() < 0
                                                 or ids.max() >= limit):
                ids = None
            if ids is None:
                return Reply(id=request.id, ok=False, error="invalid",
                             message=f"tokens: int32 ids below {limit}, at most {runner.settings.max_length} a text")
            out.append(ids if ids.size else None)
        return out
