"""The torch KS statistic (run on the CPU here) equals the numpy path's exactly, ties included."""

from __future__ import annotations

import numpy as np
import pytest

from drift.ks import ks_columns
from tests.drift.test_ks import _data

pytest.importorskip("torch")

from drift.torch_ks import ks_columns_torch


@pytest.mark.parametrize("n,m", [(1000, 1000), (60, 60), (300, 200), (17, 90)])
def test_equals_the_numpy_path(n: int, m: int) -> None:
    x, y = _data(n, m, 24, seed=n + m)  # tied, mostly-tied, signed-zero and constant columns
    ours, theirs = ks_columns_torch(x, y, device="cpu"), ks_columns(x, y)
    np.testing.assert_array_equal(ours.statistic, theirs.statistic)
    np.testing.assert_array_equal(ours.p_value, theirs.p_value)
    assert ours.statistic[3] == 0.0 and ours.p_value[3] == 1.0


def test_a_shift_shows_in_every_column() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((400, 16)).astype(np.float32)
    result = ks_columns_torch(x, x + 0.5, device="cpu")
    assert result.statistic.min() > 0.15 and result.p_value.max() < 1e-6


def test_refuses_non_finite_and_empty_samples() -> None:
    x, y = _data(20, 20, 4, seed=4)
    x[0, 0] = np.inf
    with pytest.raises(ValueError, match="finite"):
        ks_columns_torch(x, y, device="cpu")
    with pytest.raises(ValueError, match="non-empty"):
        ks_columns_torch(y[:0], y, device="cpu")
