"""The client's coalescing, against a scripted scanner on a real Unix socket: which frames were sent,
and whether every caller got exactly its own rows or the frame's error."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from detectors.runtime.client import ScannerClient, ScannerOverloaded, ScannerTimeout, ScannerUnavailable
from detectors.runtime.protocol import MAX_TEXTS_PER_CALL, REQUEST_ADAPTER, Reply, ScanRequest, encode, read_frame


@dataclass
class Scripted:
    """Scores each text `t<n>` as [n, -n]; `error` makes every scan fail; `delay_s` holds replies back."""

    frames: list[list[str]] = field(default_factory=list)
    error: str | None = None
    delay_s: float = 0.0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while (body := await read_frame(reader)) is not None:
                request = REQUEST_ADAPTER.validate_json(body)
                assert isinstance(request, ScanRequest)
                self.frames.append(request.texts)
                await asyncio.sleep(self.delay_s)
                if self.error:
                    reply = Reply(id=request.id, ok=False, error="overloaded", message=self.error)
                else:
                    values = [float(t[1:]) for t in request.texts]
                    reply = Reply(id=request.id, ok=True, labels=["a", "b"], scores=[[v, -v] for v in values])
                writer.write(encode(reply))
                await writer.drain()
        writer.close()


@pytest.fixture
async def scripted(tmp_path: Path) -> AsyncIterator[tuple[Scripted, str]]:
    script = Scripted()
    path = str(tmp_path / "s.sock")
    server = await asyncio.start_unix_server(script.serve, path)
    try:
        yield script, f"unix://{path}"
    finally:
        server.close()


def texts(start: int, n: int) -> list[str]:
    return [f"t{i}" for i in range(start, start + n)]


async def test_concurrent_scans_share_one_frame_and_each_gets_its_own_rows(scripted: tuple[Scripted, str]) -> None:
    script, address = scripted
    client = ScannerClient(address)
    try:
        calls = [client.scan("toxicity", texts(10 * i, 1 + i % 3)) for i in range(50)]
        results = await asyncio.gather(*calls)
    finally:
        await client.close()
    assert len(script.frames) == 1 and len(script.frames[0]) == sum(1 + i % 3 for i in range(50))
    for i, result in enumerate(results):
        expected = np.array([[v, -v] for v in range(10 * i, 10 * i + 1 + i % 3)], dtype=np.float32)
        assert result.scores is not None
        np.testing.assert_array_equal(result.scores, expected)
        assert result.labels == ["a", "b"]


async def test_without_coalescing_every_call_is_its_own_frame(scripted: tuple[Scripted, str]) -> None:
    script, address = scripted
    client = ScannerClient(address, coalesce=False)
    try:
        await asyncio.gather(*(client.scan("toxicity", texts(i, 1)) for i in range(20)))
    finally:
        await client.close()
    assert sorted(script.frames) == sorted([[f"t{i}"] for i in range(20)])


async def test_tasks_priorities_and_the_frame_cap_keep_frames_apart(scripted: tuple[Scripted, str]) -> None:
    script, address = scripted
    client = ScannerClient(address)
    big = MAX_TEXTS_PER_CALL // 2 + 1
    try:
        await asyncio.gather(client.scan("toxicity", texts(0, 1)), client.scan("embed", texts(1, 1)),
                             client.scan("toxicity", texts(2, 1), priority="background"),
                             client.scan("pii", texts(0, big)), client.scan("pii", texts(big, big)))
    finally:
        await client.close()
    assert sorted(len(f) for f in script.frames) == [1, 1, 1, big, big]


async def test_a_refused_frame_fails_every_caller_in_it(scripted: tuple[Scripted, str]) -> None:
    script, address = scripted
    script.error = "queue full"
    client = ScannerClient(address)
    try:
        results = await asyncio.gather(*(client.scan("toxicity", texts(i, 1)) for i in range(5)),
                                       return_exceptions=True)
    finally:
        await client.close()
    assert len(script.frames) == 1
    assert all(isinstance(r, ScannerOverloaded) and "queue full" in str(r) for r in results)


async def test_callers_that_gave_up_are_left_out_and_others_time_out_on_their_own_clock(
        scripted: tuple[Scripted, str]) -> None:
    script, address = scripted
    client = ScannerClient(address)
    try:
        gone = asyncio.ensure_future(client.scan("toxicity", texts(0, 1)))
        kept = asyncio.ensure_future(client.scan("toxicity", texts(1, 1)))
        await asyncio.sleep(0)  # both are queued for the next turn's frame
        gone.cancel()
        assert (await kept).scores is not None
        assert script.frames == [["t1"]]
        script.delay_s = 1.0
        with pytest.raises(ScannerTimeout):
            await client.scan("toxicity", texts(2, 1), timeout_s=0.1)
    finally:
        await client.close()


async def test_close_fails_queued_and_in_flight_callers(scripted: tuple[Scripted, str]) -> None:
    script, address = scripted
    script.delay_s = 5.0
    client = ScannerClient(address)
    in_flight = asyncio.ensure_future(client.scan("toxicity", texts(0, 1)))
    await asyncio.sleep(0.2)  # its frame is out, the reply held back
    queued = asyncio.ensure_future(client.scan("toxicity", texts(1, 1)))
    await asyncio.sleep(0)
    await client.close()
    for call in (in_flight, queued):
        with pytest.raises(ScannerUnavailable):
            await call
