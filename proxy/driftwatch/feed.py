"""The observer that picks exchanges for drift and queues their texts: all of it cheap, on the hot path.

Sampling happens before the request is forwarded (an unsampled request costs one random draw);
a sampled one gets a `Capture` tap, and when the answer ends its prompt and output text go into
a bounded queue. A full queue drops the texts and counts them: under load drift sees fewer
samples, never more memory or latency.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter

from proxy.driftwatch.settings import DriftSettings
from proxy.exchange import Tap
from proxy.taps import Capture
from proxy.wire.texts import APIS, joined

if TYPE_CHECKING:
    from proxy.exchange import Exchange


@dataclass(frozen=True, slots=True)
class Item:
    """One text for one stream, with its scalar signals."""

    model: str
    stream: str  # route/kind[@tenant]
    text: str
    arrived: float
    scalars: dict[str, float]


class FeedMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sampled = Counter("warden_drift_sampled_total", "Exchanges picked for drift.", registry=registry)
        self.dropped = Counter("warden_drift_dropped_total", "Texts or windows drift let go, by why.",
                               ["reason"], registry=registry)


def route_of(payload: dict[str, Any], exchange: Exchange | None = None) -> str:
    """The API the exchange spoke (`chat`, `responses`, ...): drift keeps one stream of statistics per API."""
    api = APIS.get(exchange.route) if exchange is not None else None
    if api is not None:
        return api.name
    return "chat" if "messages" in payload else "completions"


class DriftFeed:
    def __init__(self, settings: DriftSettings, metrics: FeedMetrics, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=settings.max_queue)
        self._rng = rng or random.Random()

    def observe(self, exchange: Exchange, payload: dict[str, Any]) -> Tap | None:
        """The Observer: sample, remember the prompt, and watch the answer."""
        if self.settings.sample_rate < 1.0 and self._rng.random() >= self.settings.sample_rate:
            return None
        if self.queue.full():
            self.metrics.dropped.labels("queue_full").inc()
            return None
        self.metrics.sampled.inc()
        prompt = joined(payload)
        route = route_of(payload, exchange)
        return Capture(on_end=lambda capture: self._ended(exchange, route, prompt, capture))

    def _ended(self, exchange: Exchange, route: str, prompt: str, capture: Capture) -> None:
        model = exchange.model or ""
        suffix = f"@{exchange.tenant}" if self.settings.per_tenant else ""
        now = time.time()
        if "prompt" in self.settings.streams and prompt:
            self._put(Item(model, f"{route}/prompt{suffix}", prompt[: self.settings.max_text_chars], now,
                           self._scalars(exchange, "request", prompt)))
        if "output" in self.settings.streams and capture.complete and capture.status == 200:
            output = capture.text()
            if output:
                self._put(Item(model, f"{route}/output{suffix}", output[: self.settings.max_text_chars], now,
                               self._scalars(exchange, "response", output)))

    def _scalars(self, exchange: Exchange, direction: str, text: str) -> dict[str, float]:
        # Only findings policy acted on: allowed ones (kept for review's `near` stratum) are not detections.
        findings = [f for f in exchange.verdict.findings if f.direction == direction and f.action != "allow"]
        toxic = any(f.detector in self.settings.toxicity_detectors for f in findings)
        pii = sum(1 for f in findings if f.detector in self.settings.pii_detectors)
        return {"chars": float(len(text)), "toxicity_rate": float(toxic), "pii_rate": float(pii)}

    def _put(self, item: Item) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.metrics.dropped.labels("queue_full").inc()
