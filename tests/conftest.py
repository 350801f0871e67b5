"""Session-wide guards (tests never reach a model hub and stay quiet), tiny models made once, and the
session's one chDB engine (a process may host only one data directory), shared by every package."""

from __future__ import annotations

import os
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
