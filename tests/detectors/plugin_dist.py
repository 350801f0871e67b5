"""A detector plugin installed for real: a module and its `*.dist-info` (with `entry_points.txt`) in a
directory put on sys.path, so importlib.metadata finds the entry point as it finds an installed
wheel's. The plugin is the one docs/policy.md shows ("Writing a detector type")."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SHOUTING_MODULE = '''
from __future__ import annotations

from typing import Literal

from pydantic import Field

from detectors.base import Direction, Finding, Priority
from detectors.registry import DetectorOptions, DetectorType
from detectors.runtime.client import ScannerClient


class ShoutingOptions(DetectorOptions):
    type: Literal["shouting"]
    min_letters: int = Field(8, ge=1, description="shorter texts never count as shouting")


class Shouting:
    version = "shouting-1"
    labels: tuple[str, ...] = ("SHOUTING",)

    def __init__(self, options: ShoutingOptions) -> None:
        self.name = options.name
        self.directions: frozenset[Direction] = frozenset(options.directions)
        self.min_letters = options.min_letters

    async def detect(self, texts: list[str], priority: Priority = "request") -> list[list[Finding]]:
        return [self._scan(text) for text in texts]

    def _scan(self, text: str) -> list[Finding]:
        letters = [char for char in text if char.isalpha()]
        if len(letters) < self.min_letters or not all(char.isupper() for char in letters):
            return []
        return [Finding(self.name, "SHOUTING", 1.0, explanation=f"all {len(letters)} letters are capitals")]


async def build(options: ShoutingOptions, scanner: ScannerClient | None) -> Shouting:
    return Shouting(options)


SHOUTING = DetectorType("shouting", ShoutingOptions, build)
'''


@contextmanager
def installed_plugin(root: Path, monkeypatch: pytest.MonkeyPatch, module: str, source: str,
                     entry_points: str) -> Iterator[None]:
    """`module` (from `source`) importable, and a distribution declaring `entry_points` found by importlib.metadata."""
    (root / f"{module}.py").write_text(source)
    dist = root / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(entry_points)
    monkeypatch.syspath_prepend(str(root))
    try:
        yield
    finally:
        sys.modules.pop(module, None)
