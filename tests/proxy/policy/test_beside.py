"""Flag-only request detectors are scanned beside the upstream call, not before it (issue 32): the
request reaches the upstream while a slow detector is still scanning, its flag is still recorded
with the exchange; a detector a redact or block rule could match still holds the request."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from openai import AsyncOpenAI
from prometheus_client import CollectorRegistry

from detectors.base import Direction, Finding, Priority
from detectors.registry import DetectorOptions
from proxy.errors import ContentBlocked
from proxy.policy.chain import ChainEntry, DetectorChain
from proxy.policy.engine import Scope
from proxy.policy.metrics import PolicyMetrics
from proxy.policy.service import PolicyService, settle
from proxy.policy.settings import PolicySettings
from proxy.tasks import TaskOwner
from tests.proxy.conftest import ProxyFactory, UpstreamFactory, proxy_config

DELAY_S = 0.4


class Slow:
    """Finds a SLOW label in every text after DELAY_S."""

    name = "slow"
    version = "1"
    labels: tuple[str, ...] = ("SLOW",)
    directions: frozenset[Direction] = frozenset({"request"})

    async def detect(self, texts: list[str], priority: Priority = "request") -> list[list[Finding]]:
        await asyncio.sleep(DELAY_S)
        return [[Finding(self.name, "SLOW", 0.9)] for _ in texts]


def service(action: str, mode: str = "enforce", on_error: str = "open") -> PolicyService:
    entry = ChainEntry(Slow(), DetectorOptions.model_validate({"name": "slow", "type": "patterns",
                                                               "on_error": on_error}))
    settings = PolicySettings.model_validate({"mode": mode, "rules": [{"detector": "sl*", "action": action}]})
    metrics = PolicyMetrics(CollectorRegistry())
    return PolicyService(settings, DetectorChain([entry], metrics), metrics, TaskOwner("test"))


def payload() -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}


async def test_a_flag_only_scan_runs_beside_and_is_recorded_when_settled() -> None:
    policy = service("flag")
    beside: list[asyncio.Task[None]] = []
    began = time.monotonic()
    assert await policy.check_request(payload(), Scope(), None, beside) is False
    assert time.monotonic() - began < DELAY_S / 2 and len(beside) == 1
    await settle(beside)
    assert time.monotonic() - began >= DELAY_S
    assert policy.metrics.verdicts.labels("request", "flag", "anonymous")._value.get() == 1


async def test_audit_mode_runs_beside_and_redact_block_or_fail_closed_still_hold() -> None:
    beside: list[asyncio.Task[None]] = []
    assert await service("redact", mode="audit").check_request(payload(), Scope(), None, beside) is False
    assert len(beside) == 1
    await settle(beside)
    for policy in (service("redact"), service("block"), service("flag", on_error="closed")):
        held: list[asyncio.Task[None]] = []
        began = time.monotonic()
        with contextlib.suppress(ContentBlocked):  # a block: the request never leaves
            await policy.check_request(payload(), Scope(), None, held)
        assert held == [] and time.monotonic() - began >= DELAY_S


async def test_the_upstream_gets_a_flagged_request_before_the_slow_detector_answers(
        make_upstream: UpstreamFactory, make_proxy: ProxyFactory) -> None:
    up = await make_upstream()
    arrived: list[float] = []
    record = up._record

    def timed(request: Any, body: bytes) -> None:
        arrived.append(time.monotonic())
        record(request, body)

    up._record = timed  # type: ignore[method-assign]
    config = proxy_config([up.url])
    config["detectors"] = [{"name": "slow", "type": "patterns", "directions": ["request"]}]
    config["policy"] = {"rules": [{"detector": "slow", "action": "flag"}]}
    proxy = await make_proxy(config)
    policy = proxy.state.policy
    assert policy is not None
    policy.chain.entries[0].detector = Slow()  # the configured entry, slowed down
    policy.apply(policy.settings)
    async with AsyncOpenAI(base_url=proxy.url + "/v1", api_key="k", max_retries=0) as openai:
        began = time.monotonic()
        await openai.chat.completions.create(model="m", messages=[{"role": "user", "content": "hello there"}])
    assert arrived and arrived[0] - began < DELAY_S / 2  # sent upstream while the scan was still running
    labels = {"detector": "slow", "label": "SLOW", "action": "flag", "direction": "request", "tenant": "anonymous"}
    assert proxy.metric("warden_detections_total", labels) == 1  # and recorded with the exchange
