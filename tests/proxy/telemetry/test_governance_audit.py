"""Governance leaves its trail in ClickHouse: key changes, throttles, reloads, and the tenant of each request."""

from __future__ import annotations

import hashlib
from pathlib import Path

import aiohttp
from clickhouse_connect.driver.client import Client

from tests.proxy.conftest import ProxyFactory, UpstreamFactory
from tests.proxy.governance.conftest import governed_config
from tests.proxy.telemetry.conftest import count, eventually
from tests.proxy.telemetry.test_app import fast_telemetry

ADMIN = "audit-admin-token-0123456789"
CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}


async def test_key_changes_throttles_and_reloads_are_audited(
    db: str, chdb_dir: str, chdb_client: Client, make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
    http: aiohttp.ClientSession, tmp_path: Path,
) -> None:
    up = await make_upstream()
    config = governed_config([up.url], [], keys_file=str(tmp_path / "keys.json"),
                             admin_token_sha256=[hashlib.sha256(ADMIN.encode()).hexdigest()],
                             abuse={"max_rate_limited": 2}, tenants={"acme": {"requests_per_minute": 1}})
    config["telemetry"] = fast_telemetry(chdb_dir, db, tmp_path)
    proxy = await make_proxy(config)
    admin = {"Authorization": "Bearer " + ADMIN}
    async with http.post(proxy.url + "/admin/keys", json={"tenant": "acme"}, headers=admin) as resp:
        created = await resp.json()
    key = {"Authorization": "Bearer " + created["key"]}
    for _ in range(3):  # one allowed, two refused: a (small) flood
        async with http.post(proxy.url + "/v1/chat/completions", json=CHAT, headers=key) as resp:
            await resp.read()
    async with http.delete(proxy.url + "/admin/abuse/key:" + created["id"], headers=admin) as resp:
        assert resp.status == 200
    async with http.delete(proxy.url + f"/admin/keys/{created['id']}", headers=admin) as resp:
        assert resp.status == 200
    async with http.post(proxy.url + "/admin/reload", headers=admin) as resp:
        assert resp.status == 400  # started without a config file: rejected, and audited as such
    await eventually(lambda: count(chdb_client, db, "audit_actions") >= 5, what="five audit rows")
    await eventually(lambda: count(chdb_client, db, "requests") >= 7, what="request rows (admin calls too)")
    rows = chdb_client.query(f"SELECT action, target, tenant, outcome, actor FROM `{db}`.audit_actions "
                             f"ORDER BY ts, action").result_rows
    by_action = {r[0]: r[1:] for r in rows}  # rows within one millisecond have no order: compare by action
    assert sorted(by_action) == ["abuse_lift", "abuse_throttle", "config_reload", "key_created", "key_revoked"]
    assert len(rows) == 5
    assert by_action["key_created"][:3] == (created["id"], "acme", "ok")
    assert by_action["key_created"][3].startswith("admin@")
    assert by_action["abuse_throttle"][:2] == ("key:" + created["id"], "acme")
    assert by_action["abuse_lift"][3] == "admin" and by_action["config_reload"][2] == "rejected"
    requests = chdb_client.query(f"SELECT tenant, api_key_id, status FROM `{db}`.requests "
                                 f"WHERE route = '/v1/chat/completions' ORDER BY ts").result_rows
    assert requests == [("acme", created["id"], 200), ("acme", created["id"], 429), ("acme", created["id"], 429)]
    secret = created["key"]
    for table in ("audit_actions", "requests"):
        dump = chdb_client.query(f"SELECT * FROM `{db}`.{table}").result_rows
        assert secret not in str(dump)
