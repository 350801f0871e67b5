"""Forwarding one request to a backend and relaying its answer chunk by chunk.

Retry rule: an attempt that failed before any byte reached the client (refused, reset, timed
out, or a 502/503/504 answer) is retried once on another backend of the group. Once the
response headers have gone out nothing is retried: an SSE stream gets a well-formed error
event and ends, any other body is cut off so the client cannot mistake it for a whole one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from aiohttp import web
from multidict import CIMultiDict

from proxy.errors import Unavailable, UpstreamError, UpstreamTimeout, WardenError, sse_error_event
from proxy.exchange import CLIENT_CLOSED, Exchange
from proxy.headers import client_response_headers, upstream_request_headers
from proxy.metrics import ProxyMetrics
from proxy.policy.hooks import ResponseTransform
from proxy.policy.service import TransformFactory
from proxy.upstream import Backend, Group
from proxy.upstream.http1 import Disconnected, Http1Client, UpstreamClientError, UpstreamResponse

log = logging.getLogger("warden.relay")

RETRYABLE_STATUSES = frozenset({502, 503, 504})
# 5xx answers in a row that eject a backend: a lone 500 is often one bad request, not a bad server.
EJECT_AFTER_5XX = 3
WHOLE_BODY_MAX = 64 * 1024
_NO_DEADLINE = contextlib.nullcontext()  # stateless and reusable: most requests have no deadline (4 µs saved)


class _FailedBeforeFirstByte(Exception):
    def __init__(self, error: WardenError, *, retry: bool = True) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry = retry


class _ClientGone(Exception):
    pass


class Relay:
    def __init__(
        self,
        client: Http1Client,
        metrics: ProxyMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.metrics = metrics
        self.clock = clock

    async def forward(
        self,
        request: web.Request,
        exchange: Exchange,
        group: Group,
        body: bytes,
        key: str | None,
        transform: TransformFactory | None = None,
    ) -> web.StreamResponse:
        try:
            return await self._attempts(request, exchange, group, body, key, transform)
        finally:
            for tap in exchange.taps:
                tap.end(exchange.complete)

    async def _attempts(self, request: web.Request, exchange: Exchange, group: Group, body: bytes, key: str | None,
                        transform: TransformFactory | None) -> web.StreamResponse:
        """The first attempt, and one retry elsewhere when it failed before any byte went out."""
        tried: list[Backend] = []
        last: WardenError | None = None
        trace = exchange.trace
        for attempt in range(2):
            waited_from = self.clock()
            try:
                backend = await group.acquire(key, tried)
            except Unavailable:
                if last is not None:
                    raise last from None
                raise
            self.metrics.observe_queue_wait(group.name, self.clock() - waited_from)
            if attempt:
                self.metrics.retries.labels(group.name).inc()
                log.info("retrying request %s on %s", exchange.request_id, backend.url)
            if trace is not None:
                trace.begin_attempt(backend.url, group.name, attempt, exchange.model)
            try:
                return await self._attempt(request, exchange, group, backend, body, transform, final=attempt == 1)
            except _FailedBeforeFirstByte as failure:
                if trace is not None:
                    trace.attempt_failed(failure.error.message)
                if not failure.retry:
                    raise failure.error from None
                tried.append(backend)
                last = failure.error
            finally:
                group.release(backend)
                if trace is not None:
                    trace.end_attempt(exchange)
        assert last is not None
        raise last

    async def _attempt(
        self,
        request: web.Request,
        exchange: Exchange,
        group: Group,
        backend: Backend,
        body: bytes,
        make_transform: TransformFactory | None,
        *,
        final: bool,
    ) -> web.StreamResponse:
        exchange.backend = backend.url
        headers = upstream_request_headers(request.headers, exchange.request_id, request.remote, request.scheme)
        if group.authorization is not None or exchange.api_key_id:
            # The client's Warden key is not the backend's business; the backend's own key, if any, goes instead.
            headers.popall("Authorization", None)
            headers.popall("x-api-key", None)
            if group.authorization is not None:
                headers["Authorization"] = group.authorization
        trace = exchange.trace
        if trace is not None:
            trace.inject(headers)  # the backend continues the trace under this attempt's span
        started = self.clock()
        response: web.StreamResponse | None = None
        is_sse = False
        try:
            deadline = asyncio.timeout_at(exchange.deadline) if exchange.deadline is not None else _NO_DEADLINE
            opening = self._open(request.method, backend.url, request.raw_path, body, headers)
            async with deadline, await opening as upstream:
                self.metrics.count_upstream_response(group.name, backend.url, upstream.status)
                if trace is not None:
                    trace.upstream_status(upstream.status)
                self._judge_status(group, backend, upstream.status, final)
                headers = client_response_headers(upstream.headers, exchange.request_id)
                if exchange.response_headers:
                    headers.update(exchange.response_headers)
                transform = make_transform(upstream.content_type, upstream.status) if make_transform else None
                taps = exchange.taps
                for tap in taps:
                    tap.start(upstream.status, upstream.content_type)
                size = upstream.content_length
                if transform is None and size is not None and size <= WHOLE_BODY_MAX:
                    # A small body of known size is one chunk anyway: sending it with its headers in
                    # one write saves two writes, and a body cut short can still be retried.
                    body = await upstream.read()
                    exchange.sniff(body)
                    if trace is not None:
                        trace.sniff(body)
                    for tap in taps:
                        tap.upstream(body)
                        tap.client(body)
                    exchange.complete = True
                    exchange.status = upstream.status
                    exchange.upstream_time += self.clock() - started
                    exchange.first_byte = self.clock()
                    return web.Response(body=body, status=upstream.status, reason=upstream.reason, headers=headers)
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
                if upstream.content_length is not None and transform is None:
                    response.content_length = upstream.content_length
                is_sse = exchange.streamed = upstream.content_type == "text/event-stream"
                exchange.status = upstream.status
                # A whole-body transform (JSON, text) may answer with a status of its own (an oversize or
                # unscannable answer refused): the head waits for its first bytes.
                deferred = transform is not None and not is_sse
                if not deferred:
                    await self._prepare(request, response, exchange, transform)
                async for chunk in upstream.chunks():
                    exchange.sniff(chunk)
                    if trace is not None:
                        trace.sniff(chunk)
                    if taps:
                        for tap in taps:
                            tap.upstream(chunk)
                    if transform is not None:
                        chunk = await transform.feed(chunk)
                    if taps:
                        for tap in taps:
                            tap.client(chunk)
                    if chunk and not response.prepared:
                        await self._prepare(request, response, exchange, transform)
                    await self._write(response, exchange, chunk)
                    if transform is not None and transform.stopped:
                        break  # policy ended the answer: stop reading, the upstream connection closes
                exchange.upstream_time += self.clock() - started
                stopped = transform is not None and transform.stopped
                if transform is not None and not stopped:
                    tail = await transform.finish()
                    for tap in taps:
                        tap.client(tail)
                    if not response.prepared:
                        await self._prepare(request, response, exchange, transform)
                    await self._write(response, exchange, tail)
                if not response.prepared:
                    await self._prepare(request, response, exchange, transform)
                await self._send(response.write_eof())
                exchange.complete = not stopped
                return response
        except _ClientGone:
            exchange.status = CLIENT_CLOSED
            log.info("client went away during request %s; upstream request closed", exchange.request_id)
            assert response is not None
            return response
        except asyncio.CancelledError:
            exchange.status = CLIENT_CLOSED
            raise
        except (UpstreamClientError, TimeoutError) as exc:
            exchange.upstream_time += self.clock() - started
            if exchange.deadline is not None and asyncio.get_running_loop().time() >= exchange.deadline:
                return await self._past_deadline(request, exchange, group, response, is_sse)
            timed_out = isinstance(exc, TimeoutError)
            kind = "timeout" if timed_out else type(exc).__name__
            self.metrics.upstream_failures.labels(group.name, kind).inc()
            backend.eject(self.clock(), f"{kind}: {exc}")
            if response is None or not response.prepared:
                error_type = UpstreamTimeout if timed_out else UpstreamError
                what = "timed out" if timed_out else "failed"
                raise _FailedBeforeFirstByte(error_type(f"upstream {what}: {kind}")) from exc
            log.warning("upstream %s failed mid-response for %s: %s", backend.url, exchange.request_id, kind)
            return await self._abort_sent(request, response, is_sse, kind)
        except _FailedBeforeFirstByte:
            raise
        except Exception:
            if response is None or not response.prepared:
                raise  # nothing sent yet: the middleware answers with an OpenAI-shaped 500
            # A bug met mid-answer (a transform choking on a backend's bytes) still ends the answer well-formed.
            log.exception("proxy error mid-response for %s", exchange.request_id)
            return await self._abort_sent(request, response, is_sse, "proxy error")

    async def _past_deadline(self, request: web.Request, exchange: Exchange, group: Group,
                             response: web.StreamResponse | None, is_sse: bool) -> web.StreamResponse:
        """The tenant's time is up: the backend did nothing wrong, so nothing is ejected or retried."""
        self.metrics.upstream_failures.labels(group.name, "deadline").inc()
        message = "request exceeded its time limit"
        if response is None or not response.prepared:
            raise _FailedBeforeFirstByte(UpstreamTimeout(message), retry=False)
        log.info("request %s cut at its deadline mid-response", exchange.request_id)
        return await self._abort_sent(request, response, is_sse, "request time limit reached")

    async def _open(self, method: str, url: str, target: str, body: bytes,
                    headers: CIMultiDict[str]) -> UpstreamResponse:
        """Send, re-sending once when a reused keep-alive connection turns out to be closed.

        Servers close idle or post-stream connections on their own schedule (llama.cpp closes
        after every stream); a request lost that way never reached the server, so it is sent
        again on a fresh connection. A refused or timed-out connect is not stale: it fails at once.
        """
        try:
            return await self.client.request(method, url, target, headers, body)
        except Disconnected as exc:
            if not exc.stale:
                raise
            log.debug("stale pooled connection to %s (%s); sending again on a fresh one", url, exc)
        return await self.client.request(method, url, target, headers, body, fresh=True)

    def _judge_status(self, group: Group, backend: Backend, status: int, final: bool) -> None:
        if status < 500:
            backend.record_success()
            return
        self.metrics.upstream_failures.labels(group.name, f"http_{status}").inc()
        if backend.record_failure() >= EJECT_AFTER_5XX or status in RETRYABLE_STATUSES:
            backend.eject(self.clock(), f"answered HTTP {status}")
        if status in RETRYABLE_STATUSES and not final:
            raise _FailedBeforeFirstByte(UpstreamError(f"upstream answered HTTP {status}"))

    async def _abort_sent(
        self, request: web.Request, response: web.StreamResponse, is_sse: bool, kind: str
    ) -> web.StreamResponse:
        if is_sse:
            try:
                await response.write(sse_error_event(f"upstream failed mid-stream: {kind}"))
                await response.write_eof()
                return response
            except ConnectionError:
                pass
        # A plain body cannot carry an error: close the connection so it reads as truncated.
        if request.transport is not None:
            request.transport.close()
        return response

    async def _prepare(self, request: web.Request, response: web.StreamResponse, exchange: Exchange,
                       transform: ResponseTransform | None) -> None:
        replaced = getattr(transform, "replaced", None)
        if replaced is not None:
            response.set_status(replaced[0])
            response.content_type = replaced[1]
            exchange.status = replaced[0]
        await self._send(response.prepare(request))
        exchange.sent = True

    async def _write(self, response: web.StreamResponse, exchange: Exchange, chunk: bytes) -> None:
        if not chunk:
            return
        exchange.last_byte = now = self.clock()
        exchange.chunks += 1
        if exchange.first_byte is None:
            exchange.first_byte = now
        await self._send(response.write(chunk))

    @staticmethod
    async def _send(write: object) -> None:
        """Client-side write failures are told apart from upstream ones: they eject nothing."""
        try:
            await write  # type: ignore[misc]
        except ConnectionError as exc:
            raise _ClientGone from exc
