"""Fixtures for fault injection with real processes, and a record of what each fault cost.

Recovery times and outcomes are what docs/reliability.md reports, so tests put them in one
session-wide record, printed at the end of the run (`pytest tests/reliability -q`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.proxy.conftest import http, make_proxy, make_upstream  # noqa: F401  (shared fixtures)
from tests.support.procs import Child, start_fault_upstream

Record = dict[str, str]


@pytest.fixture(scope="session")
def measured() -> Record:
    return {}


@pytest.fixture
def fault_upstream(tmp_path: Path) -> Iterator[Child]:
    child = start_fault_upstream(tmp_path)
    yield child
    child.kill()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    record: Record | None = getattr(terminalreporter.config, "_warden_measured", None)
    if record:
        terminalreporter.section("reliability measurements")
        for name, value in record.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(autouse=True, scope="session")
def _publish(request: pytest.FixtureRequest, measured: Record) -> None:
    request.config._warden_measured = measured  # type: ignore[attr-defined]
