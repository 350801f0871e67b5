"""The cache on the request path: answer from the store, join an identical request in flight, or lead.

Called by `openai_route` after request-side policy (a blocked or redacted request is decided
before the cache is asked, and the key is the body as it is sent upstream). Every answer that
did not come from the backend for this request still goes through this requester's response
policy (proxy/cache/replay.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy.cache.flight import Flight
from proxy.cache.key import CACHE_HEADER, cache_key, deterministic, directives
from proxy.cache.metrics import CacheMetrics
from proxy.cache.redis_store import RedisStore
from proxy.cache.replay import SSE, EntrySource, Source, replay
from proxy.cache.settings import CacheSettings
from proxy.cache.store import Entry, MemoryStore, Store
from proxy.exchange import Exchange
from proxy.policy.service import TransformFactory
from proxy.sealing import Sealer
from proxy.tasks import TaskOwner
from proxy.upstream import Group

Emit = Callable[[str, dict[str, Any]], None]


class Relay(Protocol):
    """What the cache needs of the relay (proxy/relay.py): a lead request is forwarded as any other."""

    async def forward(self, request: web.Request, exchange: Exchange, group: Group, body: bytes,
                      key: str | None, transform: TransformFactory | None = None) -> web.StreamResponse: ...

CACHE_STATUS = web.RequestKey("warden_cache_status", str)  # for answers the relay writes: miss or bypass


class ResponseCache:
    def __init__(self, settings: CacheSettings, registry: CollectorRegistry, background: TaskOwner,
                 emit: Emit | None = None, store: Store | None = None, sealer: Sealer | None = None) -> None:
        self.settings = settings
        self.metrics = CacheMetrics(registry, self._sizes)
        if store is None and settings.store == "redis":
            store = RedisStore(settings.redis_url, settings.ttl_s, settings.redis_prefix, self.metrics.store_error,
                               sealer=sealer)  # the memory store is not sealed: it is not at rest
        self.store = store or MemoryStore(settings.max_bytes, settings.ttl_s, on_evict=self.metrics.evicted)
        self.background = background
        self.emit = emit
        self.flights: dict[str, Flight] = {}

    async def close(self) -> None:
        if isinstance(self.store, RedisStore):
            await self.store.close()

    def _sizes(self) -> tuple[int, int, int]:
        memory = self.store if isinstance(self.store, MemoryStore) else None
        return (len(memory) if memory else 0), (memory.bytes if memory else 0), len(self.flights)

    async def handle(self, request: web.Request, exchange: Exchange, group: Group, payload: dict[str, Any],
                     relay: Relay, body: bytes, affinity: str | None,
                     make_transform: TransformFactory | None) -> web.StreamResponse:
        asked = directives(request.headers)
        eligible = request.path in self.settings.routes and (asked.force or deterministic(payload))
        if not eligible or not (asked.read or asked.write):
            self.metrics.count("uncacheable" if not eligible else "bypass")
            request[CACHE_STATUS] = "bypass"
            return await relay.forward(request, exchange, group, body, affinity, make_transform)
        namespace = "*" if self.settings.shared_across_tenants else "t:" + exchange.tenant
        key = cache_key(request.path, group.name, namespace, payload)
        if asked.read:
            entry = await self.store.get(key)
            if entry is not None:
                response = await self._serve(request, exchange, "hit", EntrySource(entry), make_transform, key,
                                             self.store.now() - entry.stored_at)
                if response is not None:
                    return response
            flight = self.flights.get(key) if self.settings.coalesce else None
            if flight is not None and flight.joinable:
                response = await self._serve(request, exchange, "coalesced", flight.join(), make_transform, key, 0.0)
                if response is not None:
                    return response
        return await self._lead(request, exchange, group, relay, body, affinity, make_transform, key, asked.write)

    async def _serve(self, request: web.Request, exchange: Exchange, how: str, source: Source,
                     make_transform: TransformFactory | None, key: str, age_s: float) -> web.StreamResponse | None:
        complete = False
        try:
            response, size = await replay(request, exchange, how, source, make_transform)
            complete = exchange.complete
        except BaseException:
            for tap in exchange.taps:
                tap.end(False)
            raise
        if response is None:
            return None  # nothing was sent and no tap started: the relay's attempt takes over
        for tap in exchange.taps:
            tap.end(complete)
        self.metrics.count(how)
        self.metrics.bytes_saved.inc(size)
        if self.emit is not None:
            self.emit("audit_actions", {
                "actor": "cache", "action": "cache_" + how, "target": key, "tenant": exchange.tenant,
                "request_id": exchange.request_id, "outcome": str(exchange.status),
                "details": {"route": request.path, "model": exchange.model or "", "bytes": str(size),
                            "age_s": f"{age_s:.3f}", "complete": str(complete).lower()},
            })
        return response

    async def _lead(self, request: web.Request, exchange: Exchange, group: Group, relay: Relay, body: bytes,
                    affinity: str | None, make_transform: TransformFactory | None, key: str,
                    write: bool) -> web.StreamResponse:
        """Ask the backend; the flight records its answer for the store and for identical requests meanwhile."""
        self.metrics.count("miss")
        request[CACHE_STATUS] = "miss"
        flight = Flight(self.settings.max_entry_bytes, lambda f: self._landed(key, f, write))
        if self.settings.coalesce and key not in self.flights:
            self.flights[key] = flight  # registered before the first await: identical requests now follow it
        exchange.taps.append(flight)
        return await relay.forward(request, exchange, group, body, affinity, make_transform)

    def _landed(self, key: str, flight: Flight, write: bool) -> None:
        if write and _storable(flight):
            # The flight stays joinable until the entry is stored: a request between the two is
            # served from the flight's record, never sent upstream again.
            entry = Entry.of(flight.status, flight.content_type, flight.chunks, self.store.now())
            self.background.spawn(self._store(key, flight, entry), "cache-put")
        else:
            self._forget(key, flight)

    async def _store(self, key: str, flight: Flight, entry: Entry) -> None:
        try:
            await self.store.put(key, entry)
        finally:
            self._forget(key, flight)

    def _forget(self, key: str, flight: Flight) -> None:
        if self.flights.get(key) is flight:
            del self.flights[key]


def _storable(flight: Flight) -> bool:
    """Whole 200 answers only; a stream only when it ended with `[DONE]`, so every replay is valid SSE."""
    if not flight.complete or flight.overflowed or flight.status != 200 or not flight.chunks:
        return False
    return flight.content_type != SSE or b"".join(flight.chunks[-2:]).rstrip().endswith(b"[DONE]")


async def add_cache_header(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the relay writes misses and bypasses, so their header is added on the way out."""
    status = request.get(CACHE_STATUS)
    if status is not None and CACHE_HEADER not in response.headers:
        response.headers[CACHE_HEADER] = status
