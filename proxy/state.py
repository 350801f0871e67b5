"""Shared state of one proxy application, reached through typed AppKeys (no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from detectors.runtime.client import ScannerClient
from proxy.cache.service import ResponseCache
from proxy.codeploy.manager import CoDeploy
from proxy.codeploy.rollout import RolloutController
from proxy.exchange import Exchange, Observer
from proxy.governance.gate import Governance, Principal
from proxy.headers import RequestIds
from proxy.metrics import ProxyMetrics
from proxy.policy.service import PolicyService
from proxy.relay import Relay
from proxy.sealing import Sealer
from proxy.settings import WardenSettings
from proxy.telemetry import TelemetryWriter
from proxy.tracing.spans import Tracing
from proxy.upstream import UpstreamPool
from proxy.upstream.http1 import Http1Client


@dataclass
class ProxyState:
    settings: WardenSettings
    pool: UpstreamPool
    registry: CollectorRegistry
    metrics: ProxyMetrics
    request_ids: RequestIds = field(default_factory=RequestIds)
    # The scanner client while the scanner cleanup context holds one; None when scanning is off.
    scanner: ScannerClient | None = None
    # The telemetry writer while its cleanup context runs it; None when telemetry is off.
    telemetry: TelemetryWriter | None = None
    # The tracer while OpenTelemetry export is configured (proxy/tracing/); None: no span is made.
    tracing: Tracing | None = None
    # The policy service while detectors are configured; None when nothing is scanned.
    policy: PolicyService | None = None
    # Keys, tenants, limits and abuse throttling while a governance section is configured.
    governance: Governance | None = None
    config_path: Path | None = None  # the file a reload re-reads; None when started without one
    # The response cache while `cache.enabled`; None otherwise (proxy/cache/).
    cache: ResponseCache | None = None
    # Managed model server replicas while any group is `managed`; canary rollouts (proxy/codeploy/).
    managed: CoDeploy | None = None
    rollouts: RolloutController | None = None
    # The data key ring while encryption at rest is on (proxy/sealing.py); every store seals with it.
    sealer: Sealer | None = None
    # Asked before each chat or completion request is forwarded; review, drift and cache watch through them.
    observers: list[Observer] = field(default_factory=list)
    # Set by the client-session cleanup context, which owns both clients' lifetimes: the relay's
    # lean HTTP/1.1 client (proxy/upstream/http1.py) and aiohttp's session for probes and listings.
    _session: aiohttp.ClientSession | None = field(default=None, repr=False)
    _relay: Relay | None = field(default=None, repr=False)

    def attach(self, session: aiohttp.ClientSession | None, client: Http1Client | None) -> None:
        self._session = session
        self._relay = Relay(client, self.metrics) if client else None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the proxy's client session is not open (app not started)")
        return self._session

    @property
    def relay(self) -> Relay:
        if self._relay is None:
            raise RuntimeError("the proxy's relay is not ready (app not started)")
        return self._relay


STATE = web.AppKey("warden_state", ProxyState)
EXCHANGE = web.RequestKey("warden_exchange", Exchange)
PRINCIPAL = web.RequestKey("warden_principal", Principal)
