"""Less tokenizing, same ids; one work item per frame, same scores.

Texts cut at a space before tokenizing give exactly the ids of full-then-truncate (a property test
with the tiny models' real tokenizer); models sharing a tokenizer tokenize a text once; frames of
mixed sizes and tasks, batched together and split across batches, score as per-request calls do;
the static-shape (CUDA-graph) step, run eagerly on the CPU, changes no score.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from detectors.runtime.batcher import MicroBatcher
from detectors.runtime.client import ScannerClient
from detectors.runtime.graphs import StaticForward
from detectors.runtime.hf import SharedTokens, load_hf_runner, share_tokenizers
from detectors.runtime.metrics import ScannerMetrics
from detectors.runtime.protocol import ScanRequest, pack_tokens
from detectors.runtime.server import Scanner
from detectors.runtime.settings import ModelSettings, ScannerSettings
from tests.detectors.runtime.test_batcher import sentences
from tests.support.tiny_models import WORDS

FP32_TOLERANCE = 1e-6
PIECES = [*WORDS, "Ünïcödé", "東京", "🙂", "antidisestablishmentarianism", "x" * 150, ",", "!", "\n", "\t", "  "]


def long_text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(PIECES) for _ in range(words))


def test_long_texts_are_cut_before_tokenizing_with_identical_ids(classifier: Any) -> None:
    assert classifier.cut_chars > 0  # the load-time probe agreed
    rng = random.Random(7)
    texts = [long_text(rng, n) for n in (300, 1000, 8000)] + ["y" * 5000 + " z" * 300, "w " * 4000]
    assert all(len(t) > classifier.cut_chars for t in texts)
    assert classifier.tokenize(texts) == classifier._wrapper_ids(texts)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(PIECES), min_size=0, max_size=1500), st.sampled_from([" ", "  ", "\n", " , "]))
def test_cut_before_tokenize_is_full_then_truncate(cut_runner: Any, words: list[str], sep: str) -> None:
    text = sep.join(words)
    assert cut_runner.tokenize([text]) == cut_runner._wrapper_ids([text])


def test_models_sharing_a_tokenizer_tokenize_a_text_once(classifier_dir: Path, embedder_dir: Path) -> None:
    a = load_hf_runner(ModelSettings(task="a", kind="classifier", path=str(classifier_dir), device="cpu"))
    b = load_hf_runner(ModelSettings(task="b", kind="embedder", path=str(embedder_dir), device="cpu"))
    share_tokenizers([a, b])
    assert isinstance(a.shared_tokens, SharedTokens) and a.shared_tokens is b.shared_tokens
    texts = sentences(20, seed=4)
    first = a.tokenize(texts)
    assert a.shared_tokens.take(id(a), texts) == [None] * 20  # never handed back to its maker
    a.tokenize(texts)
    calls: list[int] = []
    encode = b._encode

    def counted(batch: list[str]) -> list[list[int]]:
        calls.append(len(batch))
        return encode(batch)

    b._encode = counted  # type: ignore[method-assign,assignment]
    assert b.tokenize(texts) == first and calls == []  # b took every text a made
    assert b.tokenize(texts) == first and calls == [20]  # taken once: the next time b tokenizes


def test_shared_tokens_hand_each_entry_to_another_runner_once() -> None:
    shared = SharedTokens(capacity=4)
    shared.offer(1, ["a", "b"], [[1], [2]])
    shared.offer(2, ["b", "c"], [[20], [30]])
    assert shared.take(1, ["a", "b", "c"]) == [None, [20], [30]]  # its own "a" is not handed back
    assert shared.take(3, ["a", "b", "c"]) == [[1], [2], None]  # a third runner looks in both
    assert shared.take(3, ["a", "b"]) == [None, None]  # taken once
    shared.offer(1, ["d", "e", "f"], [[4], [5], [6]])
    shared.offer(1, ["g", "h"], [[7], [8]])  # over capacity: the older entries go, the new ones stay
    assert shared.take(2, ["d", "e", "f", "g", "h"]) == [None, None, None, [7], [8]]


async def test_frames_of_mixed_sizes_and_tasks_score_as_per_request_calls(tmp_path: Path, classifier: Any,
                                                                          embedder_dir: Path) -> None:
    embedder = load_hf_runner(ModelSettings(task="embed", kind="embedder", path=str(embedder_dir), device="cpu",
                                            max_batch=16, max_wait_ms=5))
    settings = ScannerSettings(socket=str(tmp_path / "s.sock"))
    scanner = Scanner(settings, {"toxicity": classifier, "embed": embedder})
    address = await scanner.start()
    client = ScannerClient(address)
    texts = sentences(90, seed=11)
    sizes = [1, 3, 40, 1, 7, 2, 30, 1, 5]  # 40 and 30 span several batches of 16
    chunks, start = [], 0
    for size in sizes:
        chunks.append(texts[start:start + size])
        start += size
    try:
        scored = await asyncio.gather(*(client.scan("toxicity", c) for c in chunks),
                                      *(client.scan("embed", c, priority="background") for c in chunks))
        tokens = [pack_tokens(np.array(ids)) for ids in classifier.tokenize(texts[:5])] + [b""]
        given = await scanner._answer(ScanRequest(id=1, task="toxicity", texts=[*texts[:5], texts[5]], tokens=tokens))
        # the client's own `tokens=`: ids for some texts, None for one it leaves to the scanner;
        # texts that do not match their ids show that the ids, not the texts, were scored
        ids: list[list[int] | None] = [list(map(int, row)) for row in classifier.tokenize(texts[:3])] + [None]
        by_ids = await client.scan("toxicity", ["unrelated words"] * 3 + [texts[3]], tokens=ids)
        with pytest.raises(ValueError, match="tokens for 1 texts"):
            await client.scan("toxicity", texts[:2], tokens=[[1, 2]])
        oversized = await scanner._answer(ScanRequest(id=2, task="toxicity", texts=["x"],
                                                      tokens=[pack_tokens(np.array([1] * 10_000))]))
    finally:
        await client.close()
        await scanner.stop()
    got = {}
    for runner, results in ((classifier, scored[:len(chunks)]), (embedder, scored[len(chunks):])):
        got[runner.task] = np.concatenate([r.scores if r.scores is not None else r.vectors for r in results])
        alone = np.stack([runner.forward(runner.collate(runner.tokenize([t])))[0] for t in texts])
        assert got[runner.task].shape == alone.shape
        assert float(np.abs(got[runner.task] - alone).max()) <= FP32_TOLERANCE
    assert given.ok and isinstance(given.scores, bytes) and given.dim == 6  # caller's token ids: same scores
    sent = np.frombuffer(given.scores, "<f4").reshape(-1, 6)
    assert float(np.abs(sent - got["toxicity"][:6]).max()) <= FP32_TOLERANCE
    assert by_ids.scores is not None and float(np.abs(by_ids.scores - got["toxicity"][:4]).max()) <= FP32_TOLERANCE
    assert not oversized.ok and oversized.error == "invalid"  # longer than max_length: refused, not truncated


async def test_a_frame_larger_than_a_batch_is_answered_once_in_order(classifier: Any) -> None:
    batcher = MicroBatcher(classifier, ScannerMetrics(CollectorRegistry()))
    await batcher.start()
    texts = sentences(70, seed=2)
    try:
        rows = await batcher.submit_work(texts)
    finally:
        await batcher.stop()
    alone = np.stack([classifier.forward(classifier.collate(classifier.tokenize([t])))[0] for t in texts])
    assert rows.shape == (70, 6) and float(np.abs(rows - alone).max()) <= FP32_TOLERANCE


def test_the_static_shape_step_changes_no_score(classifier: Any) -> None:
    static = StaticForward(classifier._step, classifier.device, 16, classifier.settings.max_length,
                           classifier.pad_id, True, capture=True)  # CPU: eager whatever capture says
    assert not static.capture
    texts = sentences(13, seed=8)
    batch = classifier.collate(classifier.tokenize(texts))
    padded = static(batch["input_ids"].numpy(), batch["attention_mask"].numpy())
    assert padded.shape == (13, 6)
    assert float(np.abs(padded - classifier.forward(batch)).max()) <= FP32_TOLERANCE
