"""Class 3: invalid Unicode (lone surrogates from `\\ud800` escapes) and duplicate JSON keys.

The request boundary refuses both with a 400 naming the field, so nothing downstream sees such
text; and each downstream part survives one bad value on its own: the telemetry writer stores the
good rows beside a bad one, a dead background task is restarted and counted, a scanner frame with
a bad text still answers the other callers in it, and the abuse monitor does not raise.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from clickhouse_connect.driver.client import Client
from prometheus_client import CollectorRegistry

from detectors.runtime.client import ScannerClient
from detectors.runtime.protocol import REQUEST_ADAPTER, Reply, ScanRequest, encode, read_frame
from proxy.governance.abuse import AbuseMonitor
from proxy.governance.settings import AbuseSettings
from proxy.review.service import ReviewService
from proxy.review.settings import ReviewSettings
from proxy.review.sqlite_store import SQLiteStore
from proxy.tasks import TaskOwner
from proxy.telemetry.settings import TelemetrySettings
from tests.proxy.conftest import ProxyFactory, RunningProxy, UpstreamFactory, proxy_config
from tests.proxy.telemetry.conftest import WriterFactory, chdb_settings, count, eventually, make_writer, metric
from tests.support.fake_upstream import FakeUpstream

__all__ = ["chdb_settings", "make_writer"]  # fixtures, imported for this package

HIGH, LOW = "\\ud800", "\\uDC00"  # escapes as a client sends them: lone halves of a surrogate pair


@pytest.fixture
async def setup(make_upstream: UpstreamFactory, make_proxy: ProxyFactory) -> tuple[RunningProxy, FakeUpstream]:
    up = await make_upstream()
    return await make_proxy(proxy_config([up.url])), up


async def post(http: aiohttp.ClientSession, proxy: RunningProxy, body: str) -> tuple[int, dict[str, Any]]:
    async with http.post(proxy.url + "/v1/chat/completions", data=body.encode(),
                         headers={"Content-Type": "application/json"}) as resp:
        return resp.status, await resp.json()


def chat(*contents: str) -> str:
    """A chat body as raw JSON text, so escapes reach the proxy exactly as written here."""
    return '{"model":"m","messages":[' + ",".join('{"role":"user","content":"' + c + '"}' for c in contents) + "]}"


@pytest.mark.parametrize(("body", "param"), [
    (chat("hi " + HIGH + " there"), "messages[0].content"),
    (chat("ok", LOW), "messages[1].content"),
    ('{"model":"m' + HIGH + '","messages":[]}', "model"),
    ('{"model":"m","messages":[],"' + HIGH + '":1}', "\ufffd"),
    ('{"model":"m","prompt":["a","b\\uD83D"]}', "prompt[1]"),
    (chat("\\ude00\\ud83d"), "messages[0].content"),  # a pair in the wrong order is two lone halves
])
async def test_lone_surrogates_are_a_400_naming_the_field(setup: tuple[RunningProxy, FakeUpstream],
                                                          http: aiohttp.ClientSession, body: str, param: str) -> None:
    proxy, up = setup
    status, payload = await post(http, proxy, body)
    assert status == 400, payload
    error = payload["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_unicode", param)
    assert param in error["message"]
    assert up.requests == []


async def test_escaped_pairs_and_literal_text_still_pass(setup: tuple[RunningProxy, FakeUpstream],
                                                         http: aiohttp.ClientSession) -> None:
    proxy, up = setup
    for content in ("\\ud83d\\ude00 a whole pair", "\\\\ud800 an escaped backslash, not an escape", "é 😀"):
        status, payload = await post(http, proxy, chat(content))
        assert status == 200, payload
    assert len(up.requests) == 3


@pytest.mark.parametrize(("body", "param"), [
    ('{"model":"a","messages":[],"model":"b"}', "model"),
    ('{"model":"m","messages":[{"role":"user","content":"x","content":"y"}]}', "messages[0].content"),
    ('{"model":"m","messages":[],"metadata":{"k":{"a":1,"a":2}}}', "metadata.k.a"),
])
async def test_duplicate_keys_are_a_400_naming_the_key(setup: tuple[RunningProxy, FakeUpstream],
                                                       http: aiohttp.ClientSession, body: str, param: str) -> None:
    proxy, up = setup
    status, payload = await post(http, proxy, body)
    assert status == 400, payload
    assert (payload["error"]["code"], payload["error"]["param"]) == ("duplicate_key", param)
    assert up.requests == []


async def test_the_writer_stores_the_good_rows_beside_a_bad_one(
    chdb_settings: Callable[..., TelemetrySettings], make_writer: WriterFactory, chdb_client: Client, db: str,
) -> None:
    registry = CollectorRegistry()
    writer = await make_writer(chdb_settings(flush_interval_s=0.05), registry)
    for i in range(5):
        writer.emit("requests", {"request_id": f"good-{i}", "tenant": "acme", "status": 200})
    writer.emit("requests", {"request_id": "bad-\ud800", "tenant": "evil", "status": 200})
    writer.emit("requests", {"request_id": "bad-type", "tenant": "evil", "status": "not a number"})
    for i in range(5, 10):
        writer.emit("requests", {"request_id": f"good-{i}", "tenant": "other", "status": 200})
    await eventually(lambda: count(chdb_client, db) == 10, what="the ten good rows")
    await eventually(lambda: metric(registry, "warden_telemetry_rows_rejected_total", table="requests") == 2,
                     what="two rows set aside")
    assert count(chdb_client, db, where="request_id LIKE 'bad%'") == 0
    assert metric(registry, "warden_telemetry_rows_spooled_total", table="requests") == 0
    assert (Path(writer.settings.spool_dir) / "rejected.spool").stat().st_size > 0


async def test_a_dead_task_is_restarted_and_counted() -> None:
    owner = TaskOwner("t")
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        await asyncio.sleep(3600)

    owner.keep(flaky, "flaky", backoff_s=(0.01, 0.05))
    await eventually(lambda: len(runs) == 3, timeout_s=5, what="two restarts")
    assert owner.restarts["flaky"] == 2
    await owner.close(0.1)


async def test_the_review_counts_task_survives_a_bad_model_name(tmp_path: Path) -> None:
    settings = ReviewSettings(db_path=str(tmp_path / "r.sqlite3"), counts_flush_s=0.02)
    service = ReviewService(settings, SQLiteStore(settings.db_path))
    await service.start()
    try:
        service.sampler.seen[("bad-\ud800", "clean")] += 1
        await eventually(lambda: service.tasks.restarts["counts"] >= 1, timeout_s=5, what="a restart")
        service.sampler.seen[("good", "clean")] += 5
        await eventually(lambda: not service.sampler.seen, timeout_s=5, what="the next save")
        await eventually(lambda: not service.sampler.seen, timeout_s=5, what="a save after it")
        assert (await service.store.estimate_inputs()).traffic == {"good": 5}
    finally:
        await service.stop(1.0)


@pytest.fixture
async def scanner(tmp_path: Path) -> AsyncIterator[str]:
    """A scanner that validates each frame with the real protocol and scores every text by its length."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while (body := await read_frame(reader)) is not None:
                request = REQUEST_ADAPTER.validate_json(body)
                assert isinstance(request, ScanRequest)
                reply = Reply(id=request.id, ok=True, labels=["len"], scores=[[float(len(t))] for t in request.texts])
                writer.write(encode(reply))
                await writer.drain()
        writer.close()

    path = str(tmp_path / "s.sock")
    server = await asyncio.start_unix_server(serve, path)
    try:
        yield f"unix://{path}"
    finally:
        server.close()


async def test_a_bad_text_does_not_fail_the_other_texts_in_its_frame(scanner: str) -> None:
    client = ScannerClient(scanner)
    try:
        good, bad = await asyncio.gather(client.scan("tox", ["hello"]), client.scan("tox", ["ab\ud800c"]))
    finally:
        await client.close()
    assert good.scores is not None and bad.scores is not None
    assert good.scores.tolist() == [[5.0]]
    assert bad.scores.tolist() == [[4.0]]  # one replacement character for the lone half: offsets hold


def test_the_abuse_monitor_takes_any_text() -> None:
    monitor = AbuseMonitor(AbuseSettings(enabled=True, template_prefix_chars=16), lambda action, r: None)
    monitor.observe_prompt("key-1", "acme", "\ud800" * 10, 1.0)
    monitor.observe_prompt("key-1", "acme", "a" * 16 + "\udfff", 2.0)
    assert monitor.signals("key-1", 3.0)["requests"] == 2
