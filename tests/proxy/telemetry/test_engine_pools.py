"""The embedded engine starts with a small merge pool: the proxy's process is not a ClickHouse server.

Run in a child process: this test session already holds an engine, and chDB keeps the settings
of the first opener of a path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import asyncio, sys
from pathlib import Path
from proxy.telemetry.store import ChdbStore

async def main():
    store = await ChdbStore.open(Path(sys.argv[1]))
    rows = await store.query("SELECT name, value FROM system.server_settings WHERE name IN "
                             "('max_parts_cleaning_thread_pool_size', 'background_pool_size') ORDER BY name")
    print(dict(rows.rows))
    await store.close()

asyncio.run(main())
"""


def test_embedded_engine_pools_are_bounded(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "ch")], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert "'background_pool_size': '4'" in out
