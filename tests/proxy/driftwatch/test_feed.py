"""The feed on the hot path: sampling, bounded queue with counted drops, texts and scalars per stream."""

from __future__ import annotations

import json
import random

import pytest
from prometheus_client import CollectorRegistry

from proxy.driftwatch.feed import DriftFeed, FeedMetrics
from proxy.driftwatch.settings import DriftSettings
from proxy.exchange import Exchange, FindingRecord

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}


def _answer(text: str) -> bytes:
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}).encode()


async def test_sampled_exchange_queues_prompt_and_output_with_scalars() -> None:
    registry = CollectorRegistry()
    feed = DriftFeed(DriftSettings(enabled=True, per_tenant=True), FeedMetrics(registry))
    exchange = Exchange(request_id="r", started=0.0, model="m", tenant="acme")
    exchange.verdict.findings.append(FindingRecord("response", "pii", "EMAIL", 0.9, "redact", ""))
    exchange.verdict.findings.append(FindingRecord("request", "toxicity", "toxic", 0.8, "flag", ""))
    tap = feed.observe(exchange, CHAT)
    assert tap is not None
    tap.start(200, "application/json")
    tap.client(_answer("write to a@b.c"))
    tap.end(True)
    prompt, output = feed.queue.get_nowait(), feed.queue.get_nowait()
    assert (prompt.stream, prompt.text, prompt.scalars) == (
        "chat/prompt@acme", "hello there", {"chars": 11.0, "toxicity_rate": 1.0, "pii_rate": 0.0})
    assert (output.stream, output.text, output.scalars["pii_rate"]) == ("chat/output@acme", "write to a@b.c", 1.0)


async def test_sampling_rate_and_full_queue_drop_instead_of_growing() -> None:
    registry = CollectorRegistry()
    settings = DriftSettings(enabled=True, sample_rate=0.5, max_queue=3, streams=["prompt"])
    feed = DriftFeed(settings, FeedMetrics(registry), rng=random.Random(0))
    taps = [feed.observe(Exchange(request_id=str(i), started=0.0, model="m"), CHAT) for i in range(40)]
    picked = [t for t in taps if t is not None]
    assert 3 <= len(picked) < 40
    for tap in picked:
        tap.start(200, "application/json")
        tap.end(True)
    assert feed.queue.qsize() == 3
    dropped = registry.get_sample_value("warden_drift_dropped_total", {"reason": "queue_full"})
    assert dropped is not None and dropped >= 1


def test_enabled_settings_validate_reference_sources() -> None:
    with pytest.raises(ValueError, match="needs reference"):
        DriftSettings.model_validate({"enabled": True, "reference": {"source": "file"}})
    config = DriftSettings(enabled=True, window={"size": 40, "min_size": 100}).monitor_config()
    assert config.window.min_size == 40 and set(config.tests.votes) == {"mmd", "centroid", "classifier_auc", "ks_dims"}
