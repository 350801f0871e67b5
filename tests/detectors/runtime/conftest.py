"""Tiny models made once per session and loaded through the real runner code.

`WARDEN_TEST_DEVICE=cuda` runs the same tests on a GPU (bf16, as the scanner runs there); CI has
none, so the default is the CPU. bf16 keeps about three significant digits, so results that fp32
matches to 1e-5 are compared at a tolerance bf16 can keep.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from detectors.runtime.settings import ModelSettings


@pytest.fixture(scope="session")
def device() -> str:
    return os.environ.get("WARDEN_TEST_DEVICE", "cpu")


@pytest.fixture(scope="session")
def atol(device: str) -> float:
    return 1e-5 if device == "cpu" else 2e-2


@pytest.fixture(scope="session")
def classifier(classifier_dir: Path, device: str) -> Any:
    from detectors.runtime.models import load_runner

    return load_runner(ModelSettings(task="toxicity", kind="classifier", path=str(classifier_dir), device=device,
                                     max_batch=16, max_wait_ms=5))


@pytest.fixture(scope="session")
def cut_runner(classifier_dir: Path) -> Any:
    """A short budget, so that short property-test texts are cut too."""
    from detectors.runtime.hf import load_hf_runner

    return load_hf_runner(ModelSettings(task="cut", kind="classifier", path=str(classifier_dir), device="cpu",
                                        max_length=16))
