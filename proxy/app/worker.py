"""A proxy worker under the supervisor (proxy/control/supervisor.py): what differs from a lone Warden.

- Limits, concurrency caps and abuse state are asked of the supervisor, their one owner on the
  host (`shared_limits_ctx`, proxy/governance/shared.py).
- `POST /admin/reload` answered by one worker reloads every worker: once its own reload applied,
  it asks the supervisor to send SIGHUP to its siblings (`merged_metrics`, the one middleware that
  answers for the whole Warden).
- `/metrics` on any worker is the whole Warden: this worker's registry (and the scanner's, as
  always), every sibling's, the telemetry process's and the supervisor's, merged into one
  exposition with no `worker` label, so dashboards and alerts read the same as for one process
  (`merge_metrics`: counters and histograms add up; gauges that count add up, gauges that state
  something take the highest value).
- Each worker serves its own registry on `worker-<n>.sock` in the supervisor's run directory, for
  the sibling that answers a scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.utils import floatToGoString

from proxy.app.contexts import Context
from proxy.governance.shared import WorkerRole
from proxy.state import STATE, ProxyState
from proxy.telemetry.remote import RemoteWriter
from proxy.telemetry.wire import RELOAD

log = logging.getLogger("warden.worker")

# Gauges that count things (summed over workers); every other gauge states something (the highest wins).
SUMMED_GAUGES = frozenset({
    "warden_in_flight_requests", "warden_upstream_outstanding", "warden_upstream_queue_depth", "warden_cache_bytes",
    "warden_cache_entries", "warden_cache_in_flight", "warden_stream_scans_waiting", "warden_drift_queue_depth",
    "warden_telemetry_handoff_buffered_rows", "warden_telemetry_handoff_spool_bytes",
})


def shared_limits_ctx(state: ProxyState, role: WorkerRole) -> Context:
    """Placed after governance: its gate asks the host's limiter and budget ledger instead of its own (memory
    only; `redis` ones are already shared), and the host's abuse monitor always (abuse has no Redis path)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        from proxy.governance.shared import SharedAbuse, SharedLedger, SharedLimiter

        gate = state.governance
        if gate is not None:
            if gate.settings.limiter == "memory":
                gate.limiter = SharedLimiter(role.hub)
                gate.ledger = gate.spend.ledger = SharedLedger(role.hub, gate.spend.zone, gate.spend.crossed)
            shared = SharedAbuse(role.hub, gate.abuse.settings, gate.abuse.on_change)
            await shared.attach()
            gate.abuse = shared
        yield

    return ctx


def sibling_metrics_ctx(state: ProxyState, role: WorkerRole) -> Context:
    """This worker's own registry on a socket of its own, for whichever sibling answers a scrape."""

    async def own(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(state.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        side = web.Application()
        side.router.add_get("/metrics/self", own)
        runner = web.AppRunner(side, access_log=None)
        await runner.setup()
        path = role.sibling_socket(role.index)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # left by this worker's previous life
        await web.UnixSite(runner, str(path)).start()
        try:
            yield
        finally:
            await runner.cleanup()

    return ctx


async def _sibling(role: WorkerRole, index: int) -> str:
    connector = aiohttp.UnixConnector(path=str(role.sibling_socket(index)))
    timeout = aiohttp.ClientTimeout(total=2.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http, \
            http.get("http://worker/metrics/self") as resp:
        return await resp.text()


async def whole_warden(state: ProxyState, role: WorkerRole, own: str) -> str:
    """`own` (this worker's scrape) merged with every sibling's, the telemetry process's and the supervisor's."""
    sources: list[Awaitable[str]] = [_sibling(role, i) for i in range(role.workers) if i != role.index]
    if isinstance(state.telemetry, RemoteWriter):
        sources.append(state.telemetry.metrics_text())
    sources.append(role.hub.metrics())
    texts = [own]
    for result in await asyncio.gather(*sources, return_exceptions=True):
        if isinstance(result, BaseException):
            log.info("a process's metrics are left out of this scrape: %s", result)
        else:
            texts.append(result)
    return merge_metrics(texts)


def merged_metrics(role: WorkerRole) -> Callable[..., Awaitable[web.StreamResponse]]:
    """What one worker answers for the whole Warden: /metrics merged, and an admin reload made everywhere."""

    @web.middleware
    async def middleware(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.path == "/admin/reload" and request.method == "POST":
            answer = await handler(request)
            if answer.status == 200:  # applied here; a rejected file would be rejected by every sibling too
                role.hub.send(RELOAD, role.index)
            return answer
        if request.path != "/metrics" or request.method != "GET":
            return await handler(request)
        # The merge reads the text format; OpenMetrics (exemplars) is what a single process offers.
        headers = CIMultiDict(request.headers)
        headers["Accept"] = "text/plain"
        response = await handler(request.clone(headers=headers))
        if not isinstance(response, web.Response) or response.status != 200 or response.body is None:
            return response
        own = bytes(response.body).decode()  # type: ignore[arg-type]
        text = await whole_warden(request.app[STATE], role, own)
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return middleware


def merge_metrics(texts: list[str]) -> str:
    """Prometheus text expositions of several processes as one: families in first-seen order."""
    families: dict[str, tuple[list[str], str, dict[str, float]]] = {}
    for text in texts:
        name, kind = "", "untyped"
        for line in text.splitlines():
            if line.startswith("# HELP "):
                name = line.split(" ", 3)[2]
                families.setdefault(name, ([line], "untyped", {}))
            elif line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                head, _, samples = families.setdefault(name, ([], kind, {}))
                if not any(h.startswith("# TYPE ") for h in head):
                    head.append(line)
                families[name] = (head, kind, samples)
            elif line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                if name not in families:
                    families[name] = ([], "untyped", {})
                samples = families[name][2]
                number = float(value)
                if key not in samples:
                    samples[key] = number
                elif key.split("{", 1)[0].endswith("_created"):
                    samples[key] = min(samples[key], number)
                elif kind == "gauge" and name not in SUMMED_GAUGES:
                    samples[key] = max(samples[key], number)
                else:
                    samples[key] += number
    out: list[str] = []
    for head, _, samples in families.values():
        out.extend(head)
        out.extend(f"{key} {floatToGoString(value)}" for key, value in samples.items())  # type: ignore[no-untyped-call]
    return "\n".join(out) + "\n"
