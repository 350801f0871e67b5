"""The embedded engine starts configured for a proxy's process, not a ClickHouse server's.

Run in child processes: this test session already holds an engine, and chDB keeps the settings
of the first opener of a path (and of the process).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from proxy.telemetry.store import EMBEDDED_ENGINE_CONFIG, engine_config_xml

SETTINGS = """
import asyncio, sys
from pathlib import Path
from proxy.telemetry.store import ChdbStore

async def main():
    store = await ChdbStore.open(Path(sys.argv[1]))
    rows = await store.query(
        "SELECT name, value FROM system.server_settings WHERE changed UNION ALL "
        "SELECT concat('merge_tree/', name), value FROM system.merge_tree_settings WHERE changed")
    print(dict(rows.rows))
    await store.close()

asyncio.run(main())
"""
# Every insert reaches chDB as a new temp file; the engine would remember each one's row count.
INSERTS = """
import asyncio, sys
from pathlib import Path
from proxy.telemetry.store import ChdbStore

async def main():
    store = await ChdbStore.open(Path(sys.argv[1]))
    await store.command("CREATE TABLE t (n UInt64) ENGINE = MergeTree ORDER BY n")
    for n in range(5):
        await store.insert("default", "t", ["n"], ["UInt64"], [[n]], f"batch-{n}")
    rows = await store.query("SELECT (SELECT count() FROM t), (SELECT count() FROM system.schema_inference_cache)")
    print(*rows.rows[0])
    await store.close()

asyncio.run(main())
"""

ALLOCATOR = """
import asyncio, os, re, sys
from pathlib import Path
from proxy.telemetry.store import ChdbStore

async def main():
    store = await ChdbStore.open(Path(sys.argv[1]))
    stats = (await store.query("SELECT stats FROM system.jemalloc_stats")).rows[0][0]
    print(re.search(r"opt.dirty_decay_ms: (\\d+)", stats).group(1), "JE_MALLOC_CONF" in os.environ)
    await store.close()

asyncio.run(main())
"""


def run_child(script: str, path: Path) -> str:
    return subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120,
                          check=True).stdout


def test_config_file_nests_sections() -> None:
    xml = engine_config_xml((("a", 1), ("s/b", 2), ("s/c", 3)))
    assert xml == "<clickhouse>\n  <a>1</a>\n  <s>\n    <b>2</b>\n    <c>3</c>\n  </s>\n</clickhouse>\n"


def test_the_engine_applies_every_setting(tmp_path: Path) -> None:
    """chDB lists settings it then ignores (max_thread_pool_free_size), so each one here was also
    seen to act (docs/reliability.md); this catches a chDB that stops reading the file."""
    changed = ast.literal_eval(run_child(SETTINGS, tmp_path / "ch"))
    assert {k: changed.get(k) for k, _ in EMBEDDED_ENGINE_CONFIG} == {k: str(v) for k, v in EMBEDDED_ENGINE_CONFIG}


def test_inserts_leave_nothing_in_the_schema_cache(tmp_path: Path) -> None:
    assert run_child(INSERTS, tmp_path / "ch").split() == ["5", "0"]


def test_the_engine_allocator_returns_freed_pages_within_a_second(tmp_path: Path) -> None:
    assert run_child(ALLOCATOR, tmp_path / "ch").split() == ["1000", "False"]  # and leaves the environment alone
