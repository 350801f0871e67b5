"""One window end to end: the torch path (run on the CPU here) gives the numpy path's verdicts; the numpy
path never imports torch; every stage is timed."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from drift.compare import Comparison, Sample, compare, resolve_torch_device
from drift.config import StatsConfig

CONFIG = StatsConfig(permutations=200, classifier_pca_dims=16)


def _windows(n: int, m: int, shift: float, seed: int, dims: int = 64) -> tuple[Sample, Sample]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dims)).astype(np.float32)
    y = rng.standard_normal((m, dims)).astype(np.float32) + shift
    return Sample(x / np.linalg.norm(x, axis=1, keepdims=True)), Sample(y / np.linalg.norm(y, axis=1, keepdims=True))


def _assert_same(ours: Comparison, theirs: Comparison, skip: tuple[str, ...] = ()) -> None:
    assert (ours.drifted, ours.votes) == (theirs.drifted, theirs.votes)
    assert [s.name for s in ours.statistics] == [s.name for s in theirs.statistics]
    for a, b in zip(ours.statistics, theirs.statistics, strict=True):
        if a.name in skip:
            continue
        assert a.drifted == b.drifted, a.name
        assert a.p_value is not None and b.p_value is not None
        if a.name in ("mmd", "centroid"):  # float32 forms: a permutation may land one step apart
            assert a.value == pytest.approx(b.value, rel=1e-3, abs=1e-7), a.name
            assert a.p_value == pytest.approx(b.p_value, abs=0.011), a.name
        elif a.name == "classifier_auc":
            assert a.value == pytest.approx(b.value, abs=1e-4)
            assert a.p_value == pytest.approx(b.p_value, rel=1e-2, abs=1e-4)
        else:  # ks_dims: exact statistics, the same p-value code
            assert (a.value, a.p_value) == (b.value, b.p_value), a.name


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("n,m,shift,drifted", [(400, 400, 0.0, False), (400, 400, 0.08, True),
                                               (500, 300, 0.0, False), (500, 300, 0.08, True)])
def test_torch_path_gives_the_numpy_verdicts(n: int, m: int, shift: float, drifted: bool, device: str) -> None:
    torch = pytest.importorskip("torch")
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no GPU here")
    reference, current = _windows(n, m, shift, seed=n + m + int(shift * 100))
    theirs = compare(reference, current, CONFIG, seed=1)
    ours = compare(reference, current, CONFIG, seed=1, torch_device=device)
    assert theirs.drifted is drifted
    assert (ours.backend, theirs.backend) == (f"torch:{device}", "numpy")
    _assert_same(ours, theirs)


def test_torch_path_with_a_projection_first() -> None:
    pytest.importorskip("torch")
    reference, current = _windows(300, 300, 0.1, seed=9)
    config = replace(CONFIG, pca_dims=24)
    _assert_same(compare(reference, current, config, seed=2, torch_device="cpu"), compare(reference, current, config,
                                                                                         seed=2))


def test_every_stage_is_timed() -> None:
    reference, current = _windows(60, 60, 0.0, seed=3)
    timings = compare(reference, current, CONFIG).timings  # the numpy path here
    assert set(timings) == {"prepare", "permutation", "classifier", "ks"}
    assert all(t >= 0 for t in timings.values())
    quick = compare(reference, current, replace(CONFIG, classifier=False, ks=False)).timings
    assert set(quick) == {"prepare", "permutation"}


def test_dispatch_follows_the_config() -> None:
    assert resolve_torch_device(StatsConfig(device="cpu")) is None
    assert resolve_torch_device(StatsConfig(device="cuda")) == "cuda"
    torch = pytest.importorskip("torch")
    expected = "cuda" if torch.cuda.is_available() else None
    assert resolve_torch_device(StatsConfig(device="auto")) == expected


def test_the_numpy_path_does_not_import_torch() -> None:
    script = (
        "import sys, numpy as np\n"
        "from drift import Sample, StatsConfig, compare\n"
        "x = np.random.default_rng(0).standard_normal((40, 8))\n"
        "compare(Sample(x), Sample(x + 1), StatsConfig(permutations=20))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
