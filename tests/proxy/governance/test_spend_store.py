"""`GET /admin/spend` and `warden spend` read the requests rows' cost from the store (the session's chDB)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from pathlib import Path

import aiohttp
import pytest
import yaml
from clickhouse_connect.driver.client import Client

from proxy.cli import main
from proxy.telemetry.commands import query_command
from proxy.telemetry.settings import TelemetrySettings
from proxy.telemetry.spend import parse_since, spend_sql
from tests.proxy.conftest import ProxyFactory, UpstreamFactory
from tests.proxy.governance.conftest import governed_config, make_key
from tests.proxy.telemetry.conftest import count, eventually
from tests.proxy.telemetry.test_app import fast_telemetry

ADMIN = "admin-token-for-spend"


def test_spans_and_groupings_are_checked() -> None:
    assert parse_since("7d") == 604800 and parse_since("30m") == 1800
    with pytest.raises(ValueError, match="since"):
        parse_since("7 days")
    with pytest.raises(ValueError, match="by"):
        spend_sql("team; DROP", 60)


async def test_spend_by_tenant_key_user_and_model_from_the_store(
    db: str, chdb_dir: str, chdb_client: Client, make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
    http: aiohttp.ClientSession, tmp_path: Path,
) -> None:
    up = await make_upstream()
    acme, other = make_key("acme"), make_key("other")
    config = governed_config([up.url], [acme, other], user_header="x-end-user",
                             admin_token_sha256=[hashlib.sha256(ADMIN.encode()).hexdigest()])
    config["telemetry"] = fast_telemetry(chdb_dir, db, tmp_path)
    config["pricing"] = {"currency": "EUR", "models": [{"model": "fake-*", "input_per_million": 1_000_000,
                                                        "output_per_million": 2_000_000}]}
    proxy = await make_proxy(config)
    sent = [(acme, {"user": "alice"}, {}), (acme, {}, {"x-end-user": "bob"}), (other, {"user": "carol"}, {}),
            (acme, {"model": "unpriced"}, {})]
    for key, extra, headers in sent:
        async with http.post(proxy.url + "/v1/chat/completions", json={
                "model": "fake-model", "messages": [{"role": "user", "content": "hi"}], **extra},
                headers={**key.headers, **headers}) as r:
            assert r.status in (200, 404)
    await eventually(lambda: count(chdb_client, db) == 4, what="the requests' rows")
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with http.get(proxy.url + "/admin/spend", params={"by": "tenant", "since": "1h"}, headers=admin) as r:
        assert r.status == 200
        rows = await r.json()
    by_tenant = {(row["tenant"], row["currency"]): row for row in rows}
    assert by_tenant[("acme", "EUR")]["spent"] == pytest.approx(6.0)  # two priced requests: 1 + 2 each
    assert by_tenant[("other", "EUR")]["spent"] == pytest.approx(3.0)
    assert by_tenant[("acme", "")]["unpriced"] == 1  # the unpriced model: 0, shown, not hidden
    async with http.get(proxy.url + "/admin/spend", params={"by": "user"}, headers=admin) as r:
        users = {row["user"]: row["spent"] for row in await r.json()}
    assert users["alice"] == pytest.approx(3.0) and users["bob"] == pytest.approx(3.0)
    async with http.get(proxy.url + "/admin/spend", params={"by": "team"}, headers=admin) as r:
        assert r.status == 400
    async with http.get(proxy.url + "/admin/spend") as r:
        assert r.status == 401

    path = tmp_path / "warden.yaml"
    path.write_text(yaml.safe_dump({**config, "governance": {}}))
    cli = ["spend", "--by", "key", "--since", "7d", "--config", str(path), "--format", "json"]
    assert await asyncio.to_thread(main, cli) == 0  # the CLI runs its own event loop
    assert await asyncio.to_thread(main, ["spend", "--by", "model", "--config", str(path)]) == 0
    # what the command prints: the same statement through query_command, into a buffer
    out = io.StringIO()
    await query_command(TelemetrySettings(**config["telemetry"]), spend_sql("key", parse_since("7d")), fmt="json",
                        out=out)
    keys = {row["key"]: row["spent"] for row in json.loads(out.getvalue()) if row["currency"] == "EUR"}
    assert keys[acme.id] == pytest.approx(6.0) and keys[other.id] == pytest.approx(3.0)
