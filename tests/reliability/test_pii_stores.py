"""With redaction configured, raw PII reaches neither the logs, ClickHouse (chDB) nor the spool.

Real processes: `warden serve` with presidio in its scanner, once with the embedded store and
once with the store away (every row spooled); then every row of every table, every spool record
and the whole debug log are searched for the raw values.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from proxy.telemetry.spool import _read_blob, decode
from tests.support.llama import free_port
from tests.support.procs import _env, start_fault_upstream, start_warden

PII = {"EMAIL_ADDRESS": "jane.doe@example.com", "US_SSN": "536-22-8726", "CREDIT_CARD": "4111 1111 1111 1111"}
TEXT = "Write to {EMAIL_ADDRESS}; her SSN is {US_SSN} and the card {CREDIT_CARD}.".format(**PII)
DUMP = """
import sys, clickhouse_connect
client = clickhouse_connect.get_client(interface="chdb", path=sys.argv[1])
for (table,) in client.query("SELECT name FROM system.tables WHERE database = 'warden'").result_rows:
    for row in client.query(f"SELECT * FROM warden.`{table}`").result_rows:
        print(table, row)
"""


def config(upstream: str, dsn: str) -> dict[str, Any]:
    return {
        "upstreams": [{"name": "main", "backends": [{"url": upstream}]}],
        "scanner": {"socket": "s.sock", "torch_threads": 1, "call_timeout_s": 30,
                    "models": [{"task": "pii", "kind": "pii"}]},
        "detectors": [{"name": "pii", "type": "scanner", "task": "pii", "timeout_s": 30, "on_error": "closed"}],
        "policy": {"rules": [{"detector": "pii", "action": "redact", "threshold": 0.3}]},
        "telemetry": {"dsn": dsn, "spool_dir": "spool", "flush_interval_s": 0.2, "insert_timeout_s": 2},
        "server": {"shutdown_grace_s": 2, "access_log": True},
    }


def traffic(url: str) -> None:
    for stream in (False, True, False):
        body = {"model": "m", "messages": [{"role": "user", "content": TEXT}], "reply": TEXT, "stream": stream}
        resp = requests.post(url + "/v1/chat/completions", json=body, timeout=60)
        assert resp.status_code == 200 and all(v not in resp.text for v in PII.values()), resp.text


def assert_clean(where: str, text: str) -> None:
    leaked = [label for label, value in PII.items() if value in text]
    assert not leaked, f"{where} holds raw {leaked}"


@pytest.mark.parametrize("store", ["chdb", "spooled"])
def test_no_raw_pii_in_logs_store_or_spool(tmp_path: Path, store: str) -> None:
    pytest.importorskip("presidio_analyzer")
    upstream = start_fault_upstream(tmp_path)
    dsn = f"chdb://{tmp_path / 'ch'}" if store == "chdb" else f"http://127.0.0.1:{free_port()}/warden"
    warden = start_warden(tmp_path, config(upstream.url, dsn), timeout=120, log_level="debug")
    try:
        traffic(warden.url)
    finally:
        assert warden.stop() == 0
        upstream.kill()
    log = warden.log()
    assert "Traceback" not in log, log[-3000:]
    assert_clean("the debug log", log)
    if store == "chdb":
        rows = subprocess.run([sys.executable, "-c", DUMP, str(tmp_path / "ch")], capture_output=True, text=True,
                              env=_env(), check=True, timeout=120).stdout
        assert "requests" in rows and "detections" in rows  # the search covered real rows
        assert_clean("ClickHouse", rows)
    else:
        records = []
        for segment in sorted((tmp_path / "spool").glob("seg-*.spool")):
            with segment.open("rb") as f:
                while (blob := _read_blob(f)) is not None:
                    entry = decode(blob)
                    records.append(json.dumps([entry.table, entry.columns], default=str))
        assert any('"detections"' in r for r in records), "nothing was spooled"
        assert_clean("the spool", "\n".join(records))
