"""Class 5: Warden's request id is random and its own; a client's `X-Request-Id` is kept beside it.

The response's X-Request-Id is Warden's id (the one the upstream and telemetry hold); the client's
own id is not echoed back.

A client that sends another tenant's id (or guesses the next one) must not make two telemetry rows
share an id, nor find its own request under someone else's.
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
from clickhouse_connect.driver.client import Client

from tests.proxy.conftest import ProxyFactory, UpstreamFactory
from tests.proxy.governance.conftest import governed_config, make_key
from tests.proxy.telemetry.conftest import count, eventually

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def test_ids_are_warden_own_and_the_client_id_has_its_column(
    db: str, chdb_dir: str, chdb_client: Client, make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
    http: aiohttp.ClientSession, tmp_path: Path,
) -> None:
    acme, evil = make_key("acme"), make_key("evil")
    up = await make_upstream()
    config = governed_config([up.url], [acme, evil])
    config["telemetry"] = {"dsn": f"chdb://{chdb_dir}", "database": db, "spool_dir": str(tmp_path / "spool"),
                           "flush_interval_s": 0.05}
    proxy = await make_proxy(config)
    seen: list[str] = []
    for key in (acme, evil):
        async with http.post(proxy.url + "/v1/chat/completions", json=CHAT,
                             headers={**key.headers, "X-Request-Id": "shared-7"}) as resp:
            assert resp.status == 200
            seen.append(resp.headers["X-Request-Id"])
        assert {k.lower(): v for k, v in up.requests[-1]["headers"].items()}["x-request-id"] == seen[-1]
    for _ in range(3):
        async with http.post(proxy.url + "/v1/chat/completions", json=CHAT, headers=acme.headers) as resp:
            seen.append(resp.headers["X-Request-Id"])
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in seen), seen
    assert len({rid[:16] for rid in seen}) == len(seen), f"ids share a prefix: {seen}"  # no per-process prefix
    await eventually(lambda: count(chdb_client, db) == 5, what="five request rows")
    rows = chdb_client.query(f"SELECT tenant, request_id, client_request_id FROM `{db}`.requests "
                             "WHERE client_request_id != '' ORDER BY tenant").result_rows
    assert rows == [("acme", seen[0], "shared-7"), ("evil", seen[1], "shared-7")]
    assert count(chdb_client, db, where="request_id = 'shared-7'") == 0


def test_a_warden_id_costs_about_a_microsecond() -> None:
    import timeit

    from proxy.headers import RequestIds

    ids = RequestIds()
    per_id_us = min(timeit.repeat(ids, number=20_000, repeat=3)) / 20_000 * 1e6
    assert per_id_us < 5, f"{per_id_us:.2f} µs per id"
    assert len({ids() for _ in range(10_000)}) == 10_000
