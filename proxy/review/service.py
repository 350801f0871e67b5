"""Review as a running service: it watches finished exchanges, samples, and keeps what it drew.

The observer is on the request path, so it only creates a tap; the tap keeps the client's bytes
(up to a cap) and, at the end, the sampler decides in memory. Only a drawn item costs more: its
text is extracted and written to the store by a task the service's TaskOwner holds, so shutdown
waits for it. Traffic counts (the population the estimates divide by) are kept in memory and
saved every `counts_flush_s`, and once more on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from proxy.exchange import Exchange, Tap
from proxy.review.estimates import rates_by_model
from proxy.review.metrics import ReviewMetrics, ReviewSnapshot
from proxy.review.sampler import Candidate, Draw, Sampler, ThresholdFor
from proxy.review.settings import ReviewSettings
from proxy.review.store import Item, Label, ReviewStore
from proxy.taps import Capture
from proxy.tasks import TaskOwner
from proxy.wire.streams import output_text
from proxy.wire.texts import prompt_text

log = logging.getLogger("warden.review")

Emit = Callable[[str, dict[str, Any]], None]
METADATA_TEMPLATE_KEYS = (("prompt_template_id", "prompt_template_version"), ("template_id", "template_version"))


class ReviewTap(Capture):
    """The client's bytes (and the backend's, when raw text may be kept), handed to the service at the end."""

    def __init__(self, service: ReviewService, exchange: Exchange, payload: dict[str, Any]) -> None:
        self.service, self.exchange, self.payload = service, exchange, payload
        self.keep_raw = service.settings.raw_text
        self._raw: list[bytes] = []
        self._raw_size = 0
        super().__init__(max_bytes=service.settings.max_text_chars * 8, on_end=service.finished)

    def start(self, status: int, content_type: str) -> None:
        super().start(status, content_type)
        self._raw, self._raw_size = [], 0

    def upstream(self, chunk: bytes) -> None:
        if self.keep_raw and self._raw_size + len(chunk) <= self.max_bytes:
            self._raw.append(chunk)
            self._raw_size += len(chunk)

    def raw_text(self) -> str:
        return output_text(self.content_type, b"".join(self._raw))


def route_of(payload: dict[str, Any], exchange: Exchange | None = None) -> str:
    """The route the exchange was answered on; a guess from the body's shape when none was recorded."""
    if exchange is not None and exchange.route:
        return exchange.route
    return "/v1/chat/completions" if "messages" in payload else "/v1/completions"


def template_of(payload: dict[str, Any], exchange: Exchange | None = None) -> tuple[str, str]:
    """The client's prompt template lineage: its headers first, else the body's metadata."""
    if exchange is not None and exchange.template_id:
        return exchange.template_id, exchange.template_version
    metadata = payload.get("metadata")
    if isinstance(metadata, dict):
        for id_key, version_key in METADATA_TEMPLATE_KEYS:
            if metadata.get(id_key) is not None:
                return str(metadata[id_key])[:128], str(metadata.get(version_key, ""))[:128]
    return "", ""


class ReviewService:
    def __init__(self, settings: ReviewSettings, store: ReviewStore, emit: Emit | None = None,
                 threshold_for: ThresholdFor | None = None, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.time, metrics: ReviewMetrics | None = None) -> None:
        self.settings = settings
        self.store = store
        self.emit = emit
        self.metrics = metrics
        self._changed = True  # items or labels changed since the metrics' last snapshot
        self.clock = clock
        self.rng = rng or random.Random()
        self.sampler = Sampler(settings, self.rng)
        if threshold_for is not None:
            self.sampler.threshold_for = threshold_for
        self.tasks = TaskOwner("review")
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        await self.store.open()
        await self.refresh_metrics()
        # Kept, not spawned: a count the store refuses (a model name it cannot encode) must not end the
        # loop, and with it the traffic counts of every tenant, until the process restarts.
        self.tasks.keep(lambda: self._save_counts_every(self.settings.counts_flush_s), "counts")

    async def stop(self, grace_s: float) -> None:
        self._stopping.set()
        await self.tasks.close(grace_s)
        await self.save_counts()
        await self.store.close()

    async def _save_counts_every(self, interval_s: float) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):  # the interval passed: save, then wait again
                await asyncio.wait_for(self._stopping.wait(), interval_s)
            await self.save_counts()
            await self.refresh_metrics()

    async def refresh_metrics(self) -> None:
        """Queue depth and estimates for /metrics, recomputed only after items or labels changed:
        it reads every item, so it runs on the store's thread and a worker thread, never per scrape."""
        if self.metrics is None or not self._changed:
            return
        self._changed = False
        pending, inputs = await self.store.pending(), await self.store.estimate_inputs()
        estimates = await asyncio.to_thread(rates_by_model, inputs.traffic, inputs.items)
        self.metrics.snapshot = ReviewSnapshot(pending, tuple(estimates))

    async def save_counts(self) -> None:
        counts = self.sampler.take_counts()
        if counts:
            await self.store.add_counts(counts)

    def observe(self, exchange: Exchange, payload: dict[str, Any]) -> Tap | None:
        return ReviewTap(self, exchange, payload)

    def finished(self, capture: Capture) -> None:
        """Runs in the relay's `finally`: decide in memory, spawn the write, never block."""
        assert isinstance(capture, ReviewTap)
        if self._stopping.is_set():
            return  # the store is closing; an exchange ending this late is neither drawn nor counted
        exchange = capture.exchange
        if capture.status != 200 and exchange.verdict.action != "block":
            return  # failed exchanges are not traffic anyone reviews; they are not counted either
        findings = tuple(exchange.verdict.findings)
        candidate = Candidate(exchange.tenant, exchange.model or "", route_of(capture.payload, exchange),
                              exchange.verdict.action, findings)
        draw = self.sampler.draw(candidate, self.clock())
        if exchange.trace is not None:  # the draw as a span of the request's trace (issue 28)
            exchange.trace.child("warden.review.draw", {
                "warden.review.stratum": draw.stratum, "warden.review.probability": draw.probability,
                "warden.review.sampled": draw.sampled}).end()
        if self.metrics is not None:
            self.metrics.seen[draw.stratum].inc()
            if draw.sampled:
                self.metrics.sampled[draw.stratum].inc()
        if draw.sampled:
            self.tasks.spawn(self._keep(capture, candidate, draw), "keep")

    async def _keep(self, capture: ReviewTap, candidate: Candidate, draw: Draw) -> None:
        exchange, cut = capture.exchange, self.settings.max_text_chars
        template_id, template_version = template_of(capture.payload, exchange)
        item = Item(
            id=uuid.uuid4().hex, created=self.clock(), request_id=exchange.request_id, tenant=candidate.tenant,
            model=candidate.model, route=candidate.route, backend=exchange.backend or "",
            model_version=exchange.model_version, stratum=draw.stratum, probability=draw.probability,
            verdict=candidate.action, prompt=prompt_text(capture.payload)[:cut], output=capture.text()[:cut],
            findings=candidate.findings, template_id=template_id, template_version=template_version,
            required=2 if draw.double else 1,
        )
        raw = capture.raw_text()[:cut] if capture.keep_raw else None
        await self.add_item(item, raw)

    async def add_item(self, item: Item, raw_output: str | None = None) -> None:
        await self.store.add(item, raw_output)
        self._changed = True
        if self.emit is not None:
            self.emit("review_samples", {
                "sample_id": item.id, "request_id": item.request_id, "tenant": item.tenant, "model": item.model,
                "reason": item.verdict, "stratum": item.stratum, "sampling_rate": item.probability,
                "verdict": item.verdict, "prompt": item.prompt, "output": item.output,
                "attrs": {"route": item.route, "backend": item.backend, "model_version": item.model_version,
                          "template_id": item.template_id, "template_version": item.template_version,
                          "required_reviews": str(item.required)},
            })

    async def label(self, item: Item, reviewer: str, label: Label) -> bool:
        if not await self.store.label(item.id, reviewer, label):
            return False
        self._changed = True
        if self.metrics is not None and label.label in self.metrics.labels:
            self.metrics.labels[label.label].inc()
        if self.emit is not None:
            self.emit("review_labels", {
                "sample_id": item.id, "reviewer": reviewer, "label": label.label,
                "severity": 1 if label.label == "violation" else 0, "notes": label.comment,
                "attrs": {"categories": ",".join(label.categories), "model": item.model, "stratum": item.stratum,
                          "probability": repr(item.probability), "request_id": item.request_id},
            })
        return True

    def audit_reveal(self, item: Item, reviewer: str, outcome: str) -> None:
        """Every look at raw text leaves a row, allowed or refused."""
        if self.emit is not None:
            self.emit("audit_actions", {
                "actor": reviewer, "action": "review.reveal_raw", "target": item.id, "tenant": item.tenant,
                "request_id": item.request_id, "outcome": outcome, "details": {"model": item.model},
            })
        log.info("raw text of review item %s requested by %s: %s", item.id, reviewer, outcome)
