"""The scanner as a real process behind its socket: shared by clients, killed, restarted, stopped."""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detectors.runtime.client import ScanFailed, ScannerClient, ScannerOverloaded, ScannerUnavailable
from detectors.runtime.settings import ModelSettings, ScannerSettings
from detectors.runtime.supervisor import ScannerSupervisor
from tests.detectors.runtime.test_batcher import sentences


def scanner_settings(tmp_path: Path, classifier_dir: Path, embedder_dir: Path, device: str,
                     queue_size: int = 256) -> ScannerSettings:
    common = {"device": device, "max_batch": 32, "max_wait_ms": 2, "queue_size": queue_size}
    return ScannerSettings(
        socket=str(tmp_path / "scanner.sock"),
        models=[ModelSettings(task="toxicity", kind="classifier", path=str(classifier_dir), **common),
                ModelSettings(task="embed", kind="embedder", path=str(embedder_dir), **common)],
        torch_threads=1, restart_backoff_s=0.1, ready_timeout_s=120,
    )


@pytest.fixture
async def supervised(tmp_path: Path, classifier_dir: Path, embedder_dir: Path,
                     device: str) -> AsyncIterator[ScannerSupervisor]:
    supervisor = ScannerSupervisor(scanner_settings(tmp_path, classifier_dir, embedder_dir, device))
    await supervisor.start()
    try:
        yield supervisor
    finally:
        await supervisor.stop()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_scans_through_the_process_match_in_process_results(supervised: ScannerSupervisor, classifier: Any,
                                                                  device: str, atol: float) -> None:
    texts = sentences(60, seed=3)
    reference = classifier.forward(classifier.collate(classifier.tokenize(texts[:1])))[0]
    clients = [ScannerClient(supervised.settings.address) for _ in range(3)]  # three "proxy workers"
    try:
        tasks = await clients[0].ping()
        assert tasks["toxicity"].labels[0] == "toxicity" and tasks["toxicity"].device.startswith(device)
        assert tasks["embed"].dim == 32 and tasks["toxicity"].dtype == ("float32" if device == "cpu" else "bfloat16")

        async def one(client: ScannerClient, text: str) -> tuple[str, Any]:
            return text, (await client.scan("toxicity", [text])).scores

        results = await asyncio.gather(*(one(clients[i % 3], t) for i, t in enumerate(texts)))
        for text, scores in results:
            assert scores is not None and scores.shape == (1, 6)
            if text == texts[0]:
                np.testing.assert_allclose(scores[0], reference, atol=atol)
        singles = {t: (await clients[1].scan("toxicity", [t])).scores for t in texts[:10]}
        for text, scores in results[:10]:
            single = singles[text]
            assert single is not None
            np.testing.assert_allclose(scores, single, atol=atol)

        vectors = (await clients[2].scan("embed", ["hello world", "good model"], priority="background")).vectors
        assert vectors is not None and vectors.shape == (2, 32)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=atol)

        with pytest.raises(ScanFailed, match="unknown_task"):
            await clients[0].scan("nope", ["x"])
        began = time.monotonic()
        with pytest.raises(ScannerOverloaded):
            await clients[0].scan("toxicity", ["x"] * 300)
        assert time.monotonic() - began < 0.5
        metrics = await clients[0].metrics_text()
        assert 'warden_scanner_items_total{task="toxicity"}' in metrics
        assert 'warden_scanner_overloaded_total{priority="request",task="toxicity"} 1.0' in metrics
        await malformed_messages_get_invalid_and_the_connection_survives(supervised)
    finally:
        for client in clients:
            await client.close()


async def malformed_messages_get_invalid_and_the_connection_survives(supervised: ScannerSupervisor) -> None:
    reader, writer = await asyncio.open_unix_connection(supervised.settings.socket)
    for body in (b'{"op": "scan", "id": 7, "task": 5}', b"not json", b'{"op": "dance", "id": 8}'):
        writer.write(struct.pack(">I", len(body)) + body)
    await writer.drain()
    replies = []
    for _ in range(3):
        (size,) = struct.unpack(">I", await reader.readexactly(4))
        replies.append(await reader.readexactly(size))
    assert all(b'"error":"invalid"' in r for r in replies)
    assert b'"id":7' in replies[0]
    ping = b'{"op": "ping", "id": 9}'
    writer.write(struct.pack(">I", len(ping)) + ping)
    (size,) = struct.unpack(">I", await reader.readexactly(4))
    assert b'"ok":true' in await reader.readexactly(size)
    writer.write(struct.pack(">I", 1 << 30))  # over the frame cap: that connection closes
    await writer.drain()
    assert await reader.read() == b""
    writer.close()
    client = ScannerClient(supervised.settings.address)
    assert "toxicity" in await client.ping()
    await client.close()


async def test_killed_or_hung_scanner_fails_fast_comes_back_and_stops_clean(tmp_path: Path, classifier_dir: Path,
                                                                      embedder_dir: Path, device: str) -> None:
    settings = scanner_settings(tmp_path, classifier_dir, embedder_dir, device, queue_size=4096)
    supervised = ScannerSupervisor(settings.model_copy(update={"health_interval_s": 0.3, "health_failures": 2}))
    await supervised.start()
    client = ScannerClient(supervised.settings.address, call_timeout_s=30)
    try:
        await client.ping()
        calls = [asyncio.create_task(client.scan("toxicity", sentences(8, seed=i))) for i in range(200)]
        await asyncio.sleep(0.05)
        pid = supervised.pid
        assert pid is not None
        killed = time.monotonic()
        os.kill(pid, 9)
        results = await asyncio.gather(*calls, return_exceptions=True)
        failed_within = time.monotonic() - killed
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures, "the kill should have caught calls in flight"
        assert all(isinstance(f, ScannerUnavailable) for f in failures), {repr(f) for f in failures}
        assert failed_within < 1.0  # pending calls fail fast, not at their 30 s timeout
        for _ in range(600):
            if supervised.pid not in (None, pid):
                break
            await asyncio.sleep(0.1)
        for _ in range(600):
            try:
                result = await client.scan("toxicity", ["back again"])
                break
            except ScannerUnavailable:
                await asyncio.sleep(0.1)
        assert result.scores is not None and result.scores.shape == (1, 6)
        assert supervised.restarts == 1

        hung = supervised.pid
        assert hung is not None
        os.kill(hung, signal.SIGSTOP)  # alive but silent: only the health pings can tell
        for _ in range(600):
            if supervised.restarts == 2 and supervised.pid not in (None, hung):
                break
            await asyncio.sleep(0.1)
        assert not alive(hung)
        for _ in range(600):
            try:
                await client.scan("toxicity", ["after the hang"])
                break
            except ScannerUnavailable:
                await asyncio.sleep(0.1)
    finally:
        await client.close()
        restarted = supervised.pid
        await supervised.stop()
    assert restarted is not None and not alive(restarted)
    assert not os.path.exists(supervised.settings.socket)
    with pytest.raises(ScannerUnavailable):
        await client.ping()
