"""Serving a recorded upstream answer (a stored entry or a leader's fan-out) to one client.

The bytes go through the requester's own response transform, as fresh bytes from a backend
would: a tenant whose rules redact or block gets the redacted or blocked form of an answer
another tenant received whole. Observers' taps see the answer like any other. A streamed
answer is written chunk by chunk, so it stays valid SSE to its `[DONE]`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from proxy.cache.key import CACHE_HEADER
from proxy.cache.store import Entry
from proxy.errors import sse_error_event
from proxy.exchange import CLIENT_CLOSED, Exchange, sniff_model_version
from proxy.headers import REQUEST_ID
from proxy.policy.hooks import ResponseTransform
from proxy.policy.service import TransformFactory

SSE = "text/event-stream"


class Source(Protocol):
    async def next(self) -> bytes | None: ...

    def head(self) -> tuple[int, str]: ...

    @property
    def complete(self) -> bool: ...


class EntrySource:
    """A stored answer in one piece: it is all here, so a stream goes out in one write (still valid SSE,
    and a transform splits nothing wrongly: the stream enforcer reads events, not chunks)."""

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        self._left = entry.size > 0

    def head(self) -> tuple[int, str]:
        return self.entry.status, self.entry.content_type

    async def next(self) -> bytes | None:
        if not self._left:
            return None
        self._left = False
        return b"".join(self.entry.chunks)

    @property
    def complete(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    content_type: str
    how: str  # the X-Warden-Cache value: hit or coalesced


Served = tuple[web.StreamResponse | None, int]


async def replay(request: web.Request, exchange: Exchange, how: str, source: Source,
                 make_transform: TransformFactory | None) -> Served:
    """The response and the raw bytes it was made of; None when the source broke before anything was sent."""
    first = await source.next()
    if first is None and not source.complete:
        return None, 0  # the leader's answer failed before a byte: the caller asks the upstream itself
    answer = Answer(*source.head(), how)
    transform = make_transform(answer.content_type, answer.status) if make_transform else None
    for tap in exchange.taps:
        tap.start(answer.status, answer.content_type)
    headers = {"Content-Type": answer.content_type or "application/octet-stream", REQUEST_ID: exchange.request_id,
               CACHE_HEADER: how}
    exchange.model_version = sniff_model_version(first or b"")
    if answer.content_type != SSE:
        return await _whole(exchange, answer, source, transform, headers, first)
    return await _stream(request, exchange, answer, source, transform, headers, first)


async def _whole(exchange: Exchange, answer: Answer, source: Source, transform: ResponseTransform | None,
                 headers: dict[str, str], chunk: bytes | None) -> Served:
    """Bodies other than streams are gathered whole first: one that breaks can still be fetched afresh."""
    parts, size = [], 0
    while chunk is not None:
        size += len(chunk)
        for tap in exchange.taps:
            tap.upstream(chunk)
        parts.append(await transform.feed(chunk) if transform is not None else chunk)
        chunk = await source.next()
    if not source.complete:
        return None, 0
    if transform is not None:
        parts.append(await transform.finish())
    body = b"".join(parts)
    for tap in exchange.taps:
        tap.client(body)
    exchange.status, exchange.first_byte, exchange.complete = answer.status, time.monotonic(), True
    return web.Response(body=body, status=answer.status, headers=headers), size


async def _stream(request: web.Request, exchange: Exchange, answer: Answer, source: Source,
                  transform: ResponseTransform | None, headers: dict[str, str], chunk: bytes | None) -> Served:
    response = web.StreamResponse(status=answer.status, headers={**headers, "Cache-Control": "no-cache"})
    exchange.status = answer.status
    size = 0
    try:
        await response.prepare(request)
        exchange.sent = True
        while chunk is not None:
            size += len(chunk)
            for tap in exchange.taps:
                tap.upstream(chunk)
            out = await transform.feed(chunk) if transform is not None else chunk
            await _write(response, exchange, out)
            if transform is not None and transform.stopped:
                return response, size  # policy ended the answer (content_filter and [DONE] went out)
            chunk = await source.next()
        if not source.complete:
            # The leader's answer broke mid-stream (its backend failed, or its client left): what a
            # relayed stream does when its backend fails.
            await _write(response, exchange, sse_error_event("upstream failed mid-stream: coalesced answer cut"))
            await response.write_eof()
            return response, size
        if transform is not None:
            await _write(response, exchange, await transform.finish())
        await response.write_eof()
        exchange.complete = True
    except ConnectionError:
        exchange.status = CLIENT_CLOSED
    return response, size


async def _write(response: web.StreamResponse, exchange: Exchange, data: bytes) -> None:
    if not data:
        return
    if exchange.first_byte is None:
        exchange.first_byte = time.monotonic()
    for tap in exchange.taps:
        tap.client(data)
    await response.write(data)
