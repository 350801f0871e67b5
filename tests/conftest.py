"""Session-wide guards (tests never reach a model hub and stay quiet; no log record holds a credential),
tiny models made once, and the session's one chDB engine (a process may host only one data directory),
shared by every package."""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.tiny_models import write_tiny_bert

if TYPE_CHECKING:  # imported lazily: the scanner's tests also run where no ClickHouse client is installed
    from clickhouse_connect.driver.client import Client

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-classifier"), classifier=True)


@pytest.fixture(scope="session")
def embedder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-embedder"), classifier=False, seed=1)


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One chDB engine per test session (a process may host only one), shared by every telemetry test."""
    return os.path.realpath(tmp_path_factory.mktemp("chdb"))


@pytest.fixture(scope="session")
def chdb_client(chdb_dir: str) -> Iterator[Client]:
    """Held open for the session, which keeps the engine up between tests."""
    import clickhouse_connect

    client = clickhouse_connect.get_client(interface="chdb", path=chdb_dir)
    yield client
    client.close()


@pytest.fixture
def db(chdb_client: Client) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    chdb_client.command(f"DROP DATABASE IF EXISTS `{name}` SYNC")


# What a credential looks like in a log line: a Warden key, a bearer token, or an Authorization,
# X-Api-Key or Cookie header with its value, or a review session cookie (docs/reliability.md, class 4).
SECRET = re.compile(
    r"wk-[0-9a-f]{12}-[A-Za-z0-9_-]{16,}"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/-]{6,}"
    r"|(?i:authorization|x-api-key|cookie)['\"]?\s*[:=]\s*['\"]?\w"
    r"|warden_review(?:_pre)?=[^;\s]"
)


class SecretWatch(logging.Handler):
    """Checks every record the suite's loggers emit, as it is emitted: the message and the text of
    its exception chain (not the formatted traceback), so the check costs a regex per record."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        parts = [record.getMessage()]
        exc = record.exc_info[1] if record.exc_info else None
        for _ in range(8):  # the chain: what raised, and what it was raised from
            if exc is None:
                break
            parts.append(str(exc))
            exc = exc.__cause__ or exc.__context__
        match = SECRET.search("\n".join(parts))
        if match is not None:
            self.leaks.append(f"{record.name} {record.levelname} at {record.pathname}:{record.lineno}: "
                              f"...{match.group()[:12]}...")


@pytest.fixture(scope="session", autouse=True)
def no_secrets_in_logs() -> Iterator[SecretWatch]:
    """Fails the session (an error at its last teardown) if any log record held a credential."""
    watch = SecretWatch()
    root = logging.getLogger()
    root.addHandler(watch)
    try:
        yield watch
    finally:
        root.removeHandler(watch)
    if watch.leaks:
        pytest.fail("credentials in the logs:\n" + "\n".join(watch.leaks[:20]), pytrace=False)


@pytest.fixture(autouse=True)
def root_logging_restored(no_secrets_in_logs: SecretWatch) -> Iterator[None]:
    """A test that runs the CLI in-process configures the root logger (a handler on the test's own
    captured stderr, a level): put it back, so later tests neither write to a closed stream nor lose records."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    yield
    root.handlers[:] = saved
    root.setLevel(level)
