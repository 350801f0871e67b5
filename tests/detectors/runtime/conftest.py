"""Tiny models made once per session and loaded through the real runner code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from detectors.runtime.settings import ModelSettings


@pytest.fixture(scope="session")
def classifier(classifier_dir: Path) -> Any:
    from detectors.runtime.models import load_runner

    return load_runner(ModelSettings(task="toxicity", kind="classifier", path=str(classifier_dir), device="cpu",
                                     max_batch=16, max_wait_ms=5))
