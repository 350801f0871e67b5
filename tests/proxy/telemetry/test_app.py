"""The proxy writes one `requests` row per request, and `warden migrate` / `warden query` work."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import aiohttp
import pytest
import yaml
from clickhouse_connect.driver.client import Client

from proxy.cli import main
from proxy.telemetry.commands import query_command, telemetry_socket
from proxy.telemetry.settings import TelemetrySettings
from tests.proxy.conftest import ProxyFactory, UpstreamFactory, proxy_config
from tests.proxy.telemetry.conftest import count, eventually
from tests.support.llama import free_port


def fast_telemetry(chdb_dir: str, db: str, tmp_path: Path) -> dict[str, object]:
    """This test's database, its own spool, and flushes every 50 ms so rows show up quickly."""
    return {"dsn": f"chdb://{chdb_dir}", "database": db, "spool_dir": str(tmp_path / "spool"),
            "flush_interval_s": 0.05}


async def test_every_request_leaves_a_row(
    db: str, chdb_dir: str, chdb_client: Client, make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
    http: aiohttp.ClientSession, tmp_path: Path,
) -> None:
    up = await make_upstream()
    config = proxy_config([up.url])
    config["telemetry"] = fast_telemetry(chdb_dir, db, tmp_path)
    proxy = await make_proxy(config)
    headers = {"X-Request-Id": "req-1", "X-Prompt-Template-Id": "support-bot", "X-Prompt-Template-Version": "7"}
    async with http.post(proxy.url + "/v1/chat/completions", json={"model": "m1", "messages": []},
                         headers=headers) as r:
        assert r.status == 200
        await r.read()
    async with http.post(proxy.url + "/v1/chat/completions", data=b"{") as r:
        assert r.status == 400
    async with http.post(proxy.url + "/v1/chat/completions", json={"model": "m1", "messages": [], "stream": True},
                         headers={"X-Request-Id": "req-streamed"}) as r:
        assert r.status == 200
        await r.read()
    await eventually(lambda: count(chdb_client, db) == 3, what="three request rows")
    # The rows are visible in the store a moment before the writer's coroutine counts them.
    written = {"table": "requests"}
    await eventually(lambda: proxy.metric("warden_telemetry_rows_written_total", written) == 3, what="the count")
    rows = chdb_client.query(
        f"SELECT client_request_id, route, model, backend, status, stream, latency_ms > 0, ttfb_ms > 0, "
        f"upstream_ms > 0, prompt_template_id, prompt_template_version, dateDiff('second', ts, now64(3)) < 60 "
        f"FROM `{db}`.requests ORDER BY status, client_request_id").result_rows
    assert rows[0] == ("req-1", "/v1/chat/completions", "m1", up.url, 200, False, True, True, True, "support-bot",
                       "7", True)
    assert rows[1][:6] == ("req-streamed", "/v1/chat/completions", "m1", up.url, 200, True)
    assert rows[2][1:6] == ("/v1/chat/completions", "", "", 400, False)
    async with http.get(proxy.url + "/metrics") as r:
        text = await r.text()
    assert 'warden_telemetry_rows_written_total{table="requests"} 3.0' in text
    assert "warden_telemetry_spool_full 0.0" in text


def test_cli_migrate_and_query(db: str, chdb_dir: str, chdb_client: Client, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    config = proxy_config(["http://127.0.0.1:9"])
    config["telemetry"] = {"dsn": f"chdb://{chdb_dir}", "database": db}
    path = tmp_path / "warden.yaml"
    path.write_text(yaml.safe_dump(config))

    assert main(["query", "--config", str(path), "SELECT 1"]) == 1
    assert "run `warden migrate` first" in capsys.readouterr().err
    assert main(["migrate", "--config", str(path)]) == 0
    assert "applied migration(s) 1, 2, 3, 4, 5; schema at version 5" in capsys.readouterr().out
    assert main(["migrate", "--config", str(path)]) == 0
    assert "nothing to apply" in capsys.readouterr().out

    chdb_client.command(f"INSERT INTO `{db}`.requests (ts, model, status) VALUES (now64(3), 'a', 200), "
                        f"(now64(3), 'a', 500), (now64(3), 'b', 200)")
    sql = "SELECT model, count() AS n, countIf(status >= 500) AS errors FROM requests GROUP BY model ORDER BY model"
    assert main(["query", "--config", str(path), sql, "--format", "json"]) == 0
    expected = [{"model": "a", "n": 2, "errors": 1}, {"model": "b", "n": 1, "errors": 0}]
    assert json.loads(capsys.readouterr().out) == expected
    assert main(["query", "--config", str(path), sql]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["model", "n", "errors"] and table[2].split() == ["a", "2", "1"]
    assert table[-1] == "(2 rows)"
    assert main(["query", "--config", str(path), "SELECT nope FROM requests"]) == 1
    assert "UNKNOWN_IDENTIFIER" in capsys.readouterr().err

    assert main(["migrate", "--dsn", "chdb:///elsewhere", "--dry-run"]) == 0  # prints, opens nothing
    assert "CREATE TABLE IF NOT EXISTS `warden`.`requests`" in capsys.readouterr().out
    assert count(chdb_client, db) == 3


async def test_policy_decisions_are_audit_rows_without_text(
    db: str, chdb_dir: str, chdb_client: Client, make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
    http: aiohttp.ClientSession, tmp_path: Path,
) -> None:
    up = await make_upstream()
    config = proxy_config([up.url])
    config["telemetry"] = fast_telemetry(chdb_dir, db, tmp_path)
    config["detectors"] = [{"name": "secrets", "type": "patterns"}]
    config["policy"] = {"rules": [{"detector": "secrets", "action": "redact"}]}
    proxy = await make_proxy(config)
    body = {"model": "m", "messages": [{"role": "user", "content": "key AKIAIOSFODNN7EXAMPLE please"}]}
    async with http.post(proxy.url + "/v1/chat/completions", json=body, headers={"X-Request-Id": "audit-1"}) as r:
        assert r.status == 200
        request_id = r.headers["X-Request-Id"]  # Warden's own id; "audit-1" is kept as client_request_id
    query = (f"SELECT request_id, direction, detector, detector_version, category, action, score, span_start, "
             f"span_end, explanation FROM `{db}`.detections")
    await eventually(lambda: len(chdb_client.query(query).result_rows) == 1, what="one detection row")
    row = chdb_client.query(query).result_rows[0]
    assert row[:6] == (request_id, "request", "secrets", "patterns:7", "AWS_ACCESS_KEY", "redact")
    assert (row[6], row[7], row[8]) == (1.0, 4, 24)
    assert "AKIA" not in row[9]  # the explanation names the rule, never the secret
    summary = (f"SELECT verdict, detection_count, detection_categories, model_version, prompt_tokens, "
               f"completion_tokens FROM `{db}`.requests")
    await eventually(lambda: len(chdb_client.query(summary).result_rows) == 1, what="the request row")
    # model_version and usage: what the backend's answer says (the fake echoes the model, usage 1 + 1)
    assert chdb_client.query(summary).result_rows[0] == ("redact", 1, ["AWS_ACCESS_KEY"], "m", 1, 1)


async def test_backend_state_changes_are_health_rows(
    db: str, chdb_dir: str, chdb_client: Client, make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
    http: aiohttp.ClientSession, tmp_path: Path,
) -> None:
    up = await make_upstream()
    dead = f"http://127.0.0.1:{free_port()}"
    config = proxy_config([dead, up.url], balancer="round_robin", health={"interval_s": 30, "eject_base_s": 30})
    config["telemetry"] = fast_telemetry(chdb_dir, db, tmp_path)
    proxy = await make_proxy(config)
    for _ in range(2):
        async with http.post(proxy.url + "/v1/chat/completions", json={"model": "m", "messages": []}) as r:
            assert r.status == 200
    query = f"SELECT upstream_group, backend, state, previous_state, reason FROM `{db}`.backend_health"
    await eventually(lambda: len(chdb_client.query(query).result_rows) >= 1, what="a health row")
    group, backend, state, previous, reason = chdb_client.query(query).result_rows[0]
    assert (group, backend, state, previous) == ("main", dead, "ejected", "healthy")
    assert "ConnectFailed" in reason and "refused" in reason


async def test_warden_query_answers_while_a_single_warden_runs(
    db: str, chdb_dir: str, make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
    http: aiohttp.ClientSession, tmp_path: Path,
) -> None:
    """`make run` suggests `warden query ...` while Warden holds the embedded store: the running Warden
    answers it on the telemetry socket, as the telemetry process does under --workers (issue 27)."""
    up = await make_upstream()
    config = proxy_config([up.url])
    config["telemetry"] = fast_telemetry(chdb_dir, db, tmp_path)
    proxy = await make_proxy(config)
    async with http.post(proxy.url + "/v1/chat/completions", json={"model": "m1", "messages": []}) as r:
        assert r.status == 200
    settings = TelemetrySettings.model_validate(config["telemetry"])
    assert telemetry_socket(settings).exists()
    answers: list[int] = []

    async def counted() -> bool:
        out = io.StringIO()
        assert await query_command(settings, "SELECT count() AS n FROM requests", fmt="json", out=out) == 0
        answers.append(json.loads(out.getvalue())[0]["n"])
        return answers[-1] == 1

    for _ in range(100):
        if await counted():
            break
        await asyncio.sleep(0.05)
    assert answers[-1] == 1
