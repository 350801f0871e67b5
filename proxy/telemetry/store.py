"""The store behind a DSN: one small async interface over clickhouse-connect, for chDB or HTTP.

Both kinds run the same SQL through the same client library, so the schema, the writer and the
dashboard queries are tested once, on the real engine (chDB). chDB is in-process and only has a
sync client: every call runs on one thread this store owns, which keeps the event loop free and
serialises calls on the engine handle. The HTTP kind uses clickhouse-connect's aiohttp client.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from yarl import URL

if TYPE_CHECKING:
    from clickhouse_connect.driver.asyncclient import AsyncClient
    from clickhouse_connect.driver.client import Client

log = logging.getLogger("warden.telemetry.store")

T = TypeVar("T")


class StoreError(Exception):
    """A store that cannot be opened for a reason a person must fix (not a passing outage)."""


@dataclass(frozen=True)
class Rows:
    names: list[str]
    rows: list[tuple[Any, ...]]


def insert_settings(token: str) -> dict[str, Any]:
    """Exactly-once per batch: a retried or replayed batch carries the same token and is skipped.

    `async_insert` is off because chDB enables it by default and server-side buffering has its
    own deduplication rules; our batches are already large. Type conversion is on because
    LowCardinality columns are sent as plain String (see `Table.wire_types`).
    """
    return {"insert_deduplication_token": token, "insert_deduplicate": 1, "async_insert": 0,
            "input_format_native_allow_types_conversion": 1}


class Store(Protocol):
    description: str

    async def command(self, sql: str) -> None: ...

    async def query(self, sql: str) -> Rows: ...

    async def insert(
        self, database: str, table: str, names: Sequence[str], types: Sequence[str],
        columns: Sequence[Sequence[Any]], token: str,
    ) -> None: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def chdb_path(dsn: str) -> Path:
    """`chdb://PATH`: relative to the working directory; `chdb:///abs/path` is absolute."""
    path = dsn.removeprefix("chdb://")
    if not path:
        raise StoreError(f"{dsn!r}: a chdb DSN needs a directory, e.g. chdb://.warden/clickhouse")
    return Path(path)


def http_parts(dsn: str) -> tuple[str, str | None]:
    """The DSN without its path, for the client, and the database the path names, if any."""
    url = URL(dsn)
    database = url.path.strip("/") or None
    return str(url.with_path("").with_query(url.query)), database


def describe(dsn: str) -> str:
    """The DSN without its password, for logs."""
    return dsn if dsn.startswith("chdb://") else str(URL(dsn).with_password(None))


# clickhouse-connect hands chDB each insert as a temp file (`INSERT ... FROM INFILE`), and the
# engine remembers every file's row count in its schema cache: one entry per insert, each under a
# new name (measured: 4,000 inserts, 4,000 entries), which nothing reads again.
CHDB_INSERT_SETTINGS: Mapping[str, Any] = MappingProxyType({"use_cache_for_count_from_files": 0})


class ChdbStore:
    def __init__(self, client: Client, executor: ThreadPoolExecutor, description: str) -> None:
        self._client = client
        self._executor = executor
        self.description = description

    @classmethod
    async def open(cls, path: Path, database: str | None = None) -> ChdbStore:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warden-chdb")
        try:
            client = await asyncio.get_running_loop().run_in_executor(executor, _open_chdb, path, database)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(client, executor, f"chdb://{path}")

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def command(self, sql: str) -> None:
        await self._call(self._client.command, sql)

    async def query(self, sql: str) -> Rows:
        result = await self._call(self._client.query, sql)
        return Rows(list(result.column_names), [tuple(r) for r in result.result_rows])

    async def query_in(self, database: str, sql: str) -> Rows:
        """`sql` with `database` as the default one, on the handle the writer inserts through.

        The telemetry process answers `warden query` this way: a second handle on the directory is
        not possible, and the default database is per client (inserts name theirs), so it is set
        for this one call, on the store's one thread.
        """
        def run() -> Rows:
            previous = self._client.database
            self._client.database = database
            try:
                result = self._client.query(sql)
            finally:
                self._client.database = previous
            return Rows(list(result.column_names), [tuple(r) for r in result.result_rows])

        return await self._call(run)

    async def insert(
        self, database: str, table: str, names: Sequence[str], types: Sequence[str],
        columns: Sequence[Sequence[Any]], token: str,
    ) -> None:
        await self._call(
            self._client.insert, table, columns, column_names=names, column_type_names=types, database=database,
            column_oriented=True, settings={**insert_settings(token), **CHDB_INSERT_SETTINGS},
        )

    async def ping(self) -> bool:
        return bool(await self._call(self._client.ping))

    async def close(self) -> None:
        try:
            await self._call(self._client.close)
        finally:
            self._executor.shutdown(wait=False)


# The embedded engine runs inside the proxy, not on a server of its own: startup settings, written
# to the config file chDB reads when it opens (nested `merge_tree` ones cannot go in its connection
# string). Measured under telemetry load (docs/reliability.md, "What grew"):
# - a MergeTree table cleans its outdated parts on a backing-off timer (up to
#   max_cleanup_delay_period, 300 s), so each insert's merged-away part stayed in memory for minutes
#   and ~400 were then removed at once; more than concurrent_part_removal_threshold (100) fans out
#   into the parts-cleaning pool, whose ~128 threads stay idle in chDB's global pool for good, each
#   with its own allocator cache and per-thread /proc files. chDB 4.4 does not apply
#   max_parts_cleaning_thread_pool_size or max_thread_pool_free_size (the global pool is set up
#   before the config is read), so the fan-out is prevented instead: clean every few seconds, a
#   few parts at a time, always on the cleanup thread.
# - a handful of merge threads, not 16, for telemetry's few inserts a second.
# - mark caches sized for a process that serves the proxy first (a server's default is 5 GiB each):
#   dashboard reads fill them up to here, telemetry's inserts not at all.
EMBEDDED_ENGINE_CONFIG: tuple[tuple[str, int], ...] = (
    ("background_pool_size", 4),
    ("merge_tree/cleanup_delay_period", 1),
    ("merge_tree/max_cleanup_delay_period", 10),
    ("merge_tree/cleanup_delay_period_random_add", 1),
    ("merge_tree/concurrent_part_removal_threshold", 1_000_000),
    ("mark_cache_size", 64 << 20),
    ("index_mark_cache_size", 16 << 20),
)
ENGINE_CONFIG_FILE = "warden-engine.xml"


def engine_config_xml(settings: Sequence[tuple[str, int]] = EMBEDDED_ENGINE_CONFIG) -> str:
    """Keys as `section/name`: nested settings (`merge_tree`) reach the engine only as XML sections."""
    tree: dict[str, Any] = {}
    for key, value in settings:
        *sections, name = key.split("/")
        node = tree
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = value

    def render(node: dict[str, Any], indent: str) -> list[str]:
        lines: list[str] = []
        for name, value in node.items():
            if isinstance(value, dict):
                lines += [f"{indent}<{name}>", *render(value, indent + "  "), f"{indent}</{name}>"]
            else:
                lines.append(f"{indent}<{name}>{value}</{name}>")
        return lines

    return "\n".join(["<clickhouse>", *render(tree, "  "), "</clickhouse>", ""])


def _write_engine_config(path: Path) -> Path:
    """Rewritten at every open (atomically: a crash must not leave half a config for the next start)."""
    config = path / ENGINE_CONFIG_FILE
    tmp = config.with_suffix(".tmp")
    tmp.write_text(engine_config_xml())
    tmp.replace(config)
    return config


# chDB's allocator (jemalloc) keeps freed pages for 5 s before returning them to the OS. Merges
# free more per second as a day's parts grow, so that reserve, and the proxy's RSS with it, rose
# for ~15 minutes of a soak (docs/reliability.md); at 1 s it is a fifth of that. jemalloc reads
# this once, when chDB's library loads; an operator's own JE_MALLOC_CONF wins.
ENGINE_ALLOCATOR_CONF = "dirty_decay_ms:1000"


def _load_chdb() -> None:
    """Load chDB's library with `ENGINE_ALLOCATOR_CONF`, without leaving it in the environment.

    Child processes (the scanner, a model server) must not inherit a setting meant for one library.
    """
    if "chdb" in sys.modules:
        return
    previous = os.environ.get("JE_MALLOC_CONF")
    os.environ["JE_MALLOC_CONF"] = previous or ENGINE_ALLOCATOR_CONF
    try:
        importlib.import_module("chdb")
    finally:
        if previous is None:
            os.environ.pop("JE_MALLOC_CONF", None)
        else:
            os.environ["JE_MALLOC_CONF"] = previous


def _open_chdb(path: Path, database: str | None) -> Client:
    _load_client_library()
    _load_chdb()
    import clickhouse_connect
    from clickhouse_connect.driver.exceptions import ClickHouseError

    path.mkdir(parents=True, exist_ok=True)
    try:
        return clickhouse_connect.get_client(interface="chdb", path=str(path), database=database,
                                             chdb_options={"config-file": str(_write_engine_config(path))})
    except ClickHouseError as exc:
        if "EmbeddedServer" in str(exc):
            raise StoreError(
                f"cannot open the embedded ClickHouse (chDB) at {path}: another process has it open (a running "
                "`warden serve`?), or this process opened another directory. chDB allows one process per "
                "directory: stop the other process, or set telemetry.dsn to a ClickHouse server"
            ) from exc
        raise


def _load_client_library() -> None:
    """Import clickhouse-connect and what it imports lazily, when the store opens.

    Its first insert otherwise imports pandas (installed with chDB) to test whether the data is
    a DataFrame: 0.4-0.8 s, which stalled every request (on the loop, or from a thread holding
    the GIL) when it happened under traffic. At open, the proxy is not serving yet.
    """
    import clickhouse_connect  # noqa: F401
    from clickhouse_connect.driver import options

    for name in ("np", "pd", "arrow", "pl"):
        getattr(options, name)


class HttpStore:
    def __init__(self, client: AsyncClient, description: str) -> None:
        self._client = client
        self.description = description

    @classmethod
    async def open(cls, dsn: str, timeout_s: float, database: str | None = None) -> HttpStore:
        await asyncio.to_thread(_load_client_library)
        import clickhouse_connect

        server_dsn, _ = http_parts(dsn)
        client = await clickhouse_connect.get_async_client(
            dsn=server_dsn, database=database, connect_timeout=min(timeout_s, 5.0),
            send_receive_timeout=timeout_s, query_retries=0,
        )
        return cls(client, describe(dsn))

    async def command(self, sql: str) -> None:
        await self._client.command(sql)

    async def query(self, sql: str) -> Rows:
        result = await self._client.query(sql)
        return Rows(list(result.column_names), [tuple(r) for r in result.result_rows])

    async def insert(
        self, database: str, table: str, names: Sequence[str], types: Sequence[str],
        columns: Sequence[Sequence[Any]], token: str,
    ) -> None:
        await self._client.insert(
            table, columns, column_names=names, column_type_names=types, database=database,
            column_oriented=True, settings=insert_settings(token),
        )

    async def ping(self) -> bool:
        return bool(await self._client.ping())

    async def close(self) -> None:
        await self._client.close()


async def open_store(dsn: str, *, timeout_s: float = 10.0, database: str | None = None) -> Store:
    """Open the store a DSN names; `database` makes it the default for unqualified SQL."""
    if dsn.startswith("chdb://"):
        return await ChdbStore.open(chdb_path(dsn), database)
    return await HttpStore.open(dsn, timeout_s, database)


def database_for(dsn: str, configured: str) -> str:
    """An http(s) DSN may name the database in its path; otherwise the configured one."""
    if dsn.startswith("chdb://"):
        return configured
    return http_parts(dsn)[1] or configured
