"""`GET /admin/query`: what `warden query` prints, for tools, read-only, behind the admin token."""

from __future__ import annotations

import hashlib
from pathlib import Path

import aiohttp
from clickhouse_connect.driver.client import Client

from tests.proxy.conftest import ProxyFactory, UpstreamFactory, proxy_config
from tests.proxy.telemetry.conftest import count, eventually
from tests.proxy.telemetry.test_app import fast_telemetry

ADMIN = "admin-token-for-query"


async def test_admin_query_answers_read_only_sql_with_the_admin_token(
    db: str, chdb_dir: str, chdb_client: Client, make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
    http: aiohttp.ClientSession, tmp_path: Path,
) -> None:
    up = await make_upstream()
    config = proxy_config([up.url])
    config["telemetry"] = fast_telemetry(chdb_dir, db, tmp_path)
    config["governance"] = {"admin_token_sha256": [hashlib.sha256(ADMIN.encode()).hexdigest()]}
    proxy = await make_proxy(config)
    async with http.post(proxy.url + "/v1/chat/completions", json={"model": "m1", "messages": []}) as r:
        assert r.status == 200
    await eventually(lambda: count(chdb_client, db) == 1, what="the request's row")
    admin = {"Authorization": f"Bearer {ADMIN}"}
    url = proxy.url + "/admin/query"
    sql = "SELECT model, count() AS n FROM requests GROUP BY model"
    async with http.get(url, params={"sql": sql}, headers=admin) as r:
        assert r.status == 200 and r.content_type == "application/json"
        assert await r.json() == [{"model": "m1", "n": 1}]
    async with http.get(url, params={"sql": sql, "format": "table"}, headers=admin) as r:
        assert (await r.text()).splitlines() == ["model  n", "-----  -", "m1     1", "(1 row)"]
    async with http.get(url, params={"sql": "DROP TABLE requests"}, headers=admin) as r:
        assert r.status == 400 and (await r.json())["error"]["code"] == "query_refused"
    async with http.get(url, params={"sql": "SELECT nope FROM requests"}, headers=admin) as r:
        assert r.status == 400 and (await r.json())["error"]["code"] == "query_failed"
    async with http.get(url, params={"sql": sql}) as r:
        assert r.status == 401
