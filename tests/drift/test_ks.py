"""Column-wise KS agrees with scipy's ks_2samp, one column at a time; BH agrees with scipy's."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import false_discovery_control, ks_2samp

from drift.ks import benjamini_hochberg, ks_columns


def _data(n: int, m: int, dims: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dims)).astype(np.float32)
    y = (rng.standard_normal((m, dims)) * 1.1 + 0.15).astype(np.float32)
    x[:10, 0], y[:7, 0] = 0.0, 0.0  # ties across the samples
    x[:, 1], y[:, 1] = np.round(x[:, 1]), np.round(y[:, 1])  # a mostly-tied column
    x[3, 2], y[3, 2] = -0.0, 0.0  # signed zeros are one value
    x[:, 3], y[:, 3] = 1.5, 1.5  # a constant column
    return x, y


@pytest.mark.parametrize("n,m", [(1000, 1000), (60, 60), (300, 200), (17, 90)])
def test_statistic_and_p_value_match_scipy(n: int, m: int) -> None:
    x, y = _data(n, m, 24, seed=n + m)
    result = ks_columns(x, y)
    for j in range(x.shape[1]):
        default = ks_2samp(x[:, j], y[:, j])
        assert result.statistic[j] == pytest.approx(default.statistic, abs=1e-12), j
        if n == m:  # scipy's exact path, which ours follows
            assert result.p_value[j] == pytest.approx(default.pvalue, rel=1e-9, abs=1e-300), j
        else:  # ours is Smirnov's distribution, scipy's method="asymp"; its exact path is close
            asymp = ks_2samp(x[:, j], y[:, j], method="asymp")
            assert result.p_value[j] == pytest.approx(asymp.pvalue, rel=1e-9, abs=1e-300), j
            assert result.p_value[j] == pytest.approx(default.pvalue, abs=0.03), j
    assert result.p_value[3] == 1.0 and result.statistic[3] == 0.0


def test_sample_order_does_not_matter() -> None:
    x, y = _data(80, 50, 6, seed=3)
    a, b = ks_columns(x, y), ks_columns(y, x)
    np.testing.assert_allclose(a.statistic, b.statistic, atol=1e-12)
    np.testing.assert_allclose(a.p_value, b.p_value, rtol=1e-12)


def test_refuses_non_finite_values() -> None:
    x, y = _data(20, 20, 4, seed=4)
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        ks_columns(x, y)


def test_benjamini_hochberg_matches_scipy() -> None:
    p = np.random.default_rng(5).uniform(size=300) ** 3
    np.testing.assert_allclose(benjamini_hochberg(p), false_discovery_control(p), rtol=1e-12)
    assert benjamini_hochberg(np.array([])).size == 0
