"""The micro-batcher: same answers as one-by-one calls, bounded queues, failures isolated per batch."""

from __future__ import annotations

import asyncio
import functools
import random
import time
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from detectors.runtime.batcher import BatchFailed, MicroBatcher, Overloaded, length_groups
from detectors.runtime.metrics import ScannerMetrics
from tests.support.tiny_models import WORDS


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 40))) + f" {i}" for i in range(n)]


class Slow:
    """Wraps a runner: slow forward passes, and a poison word that makes the whole batch raise."""

    def __init__(self, inner: Any, delay_s: float = 0.0, **overrides: Any) -> None:
        self.inner = inner
        self.task = inner.task
        self.kind = inner.kind
        self.output = inner.output
        self.labels = inner.labels
        self.settings = inner.settings.model_copy(update=overrides)
        self.delay_s = delay_s
        self.batches: list[int] = []

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        if any("poison" in t for t in texts):
            raise ValueError("poisoned batch")
        return self.inner.tokenize(texts)  # type: ignore[no-any-return]

    def collate(self, ids: list[list[int]]) -> Any:
        return self.inner.collate(ids)

    def forward(self, batch: Any) -> Any:
        time.sleep(self.delay_s)
        self.batches.append(len(batch["input_ids"]))
        return self.inner.forward(batch)


def done(order: list[str], name: str, _: object) -> None:
    order.append(name)


async def started(runner: Any) -> MicroBatcher:
    batcher = MicroBatcher(runner, ScannerMetrics(CollectorRegistry()))
    await batcher.start()
    return batcher


def test_length_groups_cut_at_powers_of_two() -> None:
    assert length_groups([3, 17, 4, 1, 9, 16, 2]) == [[3, 6, 0, 2], [4, 5], [1]]


async def test_concurrent_callers_get_exactly_the_one_by_one_results(classifier: Any, atol: float) -> None:
    texts = sentences(120)
    reference = {t: classifier.forward(classifier.collate(classifier.tokenize([t])))[0] for t in texts}
    runner = Slow(classifier)
    batcher = await started(runner)
    try:
        async def caller(chunk: list[str]) -> list[tuple[str, Any]]:
            await asyncio.sleep(random.random() * 0.02)
            results = await asyncio.gather(*batcher.submit(chunk))
            return list(zip(chunk, results, strict=True))

        chunks = [texts[i:i + 3] for i in range(0, len(texts), 3)]
        answers = [pair for chunk in await asyncio.gather(*(caller(c) for c in chunks)) for pair in chunk]
    finally:
        await batcher.stop()
    assert len(answers) == len(texts)
    for text, scores in answers:
        np.testing.assert_allclose(scores, reference[text], rtol=0, atol=atol)
    assert max(runner.batches) > 1  # it really batched


async def test_full_queue_is_refused_at_once(classifier: Any) -> None:
    batcher = await started(Slow(classifier, delay_s=0.2, queue_size=8, max_batch=4))
    try:
        pending = batcher.submit(sentences(8))
        began = time.monotonic()
        with pytest.raises(Overloaded):
            batcher.submit(["one more"])
        assert time.monotonic() - began < 0.01
        batcher.submit(["background still has room"], priority="background")
        await asyncio.gather(*pending)
    finally:
        await batcher.stop()


async def test_a_failed_batch_fails_its_items_and_the_next_batch_works(classifier: Any) -> None:
    batcher = await started(Slow(classifier, max_wait_ms=20))
    try:
        doomed = batcher.submit(["hello", "poison pill", "world"])
        results = await asyncio.gather(*doomed, return_exceptions=True)
        assert all(isinstance(r, BatchFailed) and "poisoned batch" in str(r) for r in results)
        fine = await asyncio.gather(*batcher.submit(["hello again"]))
        assert fine[0].shape == (6,)
    finally:
        await batcher.stop()


async def test_request_items_go_before_background_items(classifier: Any) -> None:
    runner = Slow(classifier, delay_s=0.05, max_batch=2, max_wait_ms=0)
    batcher = await started(runner)
    order: list[str] = []
    try:
        first = batcher.submit(["warm", "up"])  # occupies the device while the rest queue
        await asyncio.sleep(0.01)
        background = batcher.submit([f"bg {i}" for i in range(4)], priority="background")
        request = batcher.submit([f"rq {i}" for i in range(4)], priority="request")
        for name, futures in (("bg", background), ("rq", request)):
            for future in futures:
                future.add_done_callback(functools.partial(done, order, name))
        await asyncio.gather(*first, *background, *request)
    finally:
        await batcher.stop()
    assert order[:4] == ["rq"] * 4


async def test_callers_that_gave_up_cost_no_compute(classifier: Any) -> None:
    runner = Slow(classifier, delay_s=0.1, max_batch=4, max_wait_ms=0)
    batcher = await started(runner)
    try:
        busy = batcher.submit(["busy"])
        await asyncio.sleep(0.01)
        abandoned = batcher.submit(sentences(4))
        for future in abandoned:
            future.cancel()
        await asyncio.gather(*busy)
        await asyncio.gather(*batcher.submit(["after"]))
    finally:
        await batcher.stop()
    assert sum(runner.batches) == 2
