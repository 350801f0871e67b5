"""The vectorised KS p-values agree with scipy's per-value ones, branch by branch, to ~1e-10."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import smirnov
from scipy.stats import kstwo
from scipy.stats._stats_py import _compute_prob_outside_square

from drift.kolmogorov import durbin_cdf, kolmogorov_sf, prob_outside_square, smirnov_sf


def _grid(n: int, count: int, seed: int) -> np.ndarray:
    """Statistics over every branch scipy picks between: 0, (0, 1/2n], (1/2n, 1/n], the body, the tails, 1."""
    rng = np.random.default_rng(seed)
    body = rng.uniform(0, min(1.0, 4 / np.sqrt(n)), count)
    edges = np.array([0.0, 0.3 / n, 0.5 / n, 0.8 / n, 1 / n, 1.5 / n, (n - 1) / n, 0.5, 0.75, 1.0])
    return np.concatenate([edges, body, rng.uniform(0, 1, count // 4)])


@pytest.mark.parametrize("n", [1, 2, 5, 38, 140, 141, 500, 3000])
def test_kolmogorov_sf_matches_scipy(n: int) -> None:
    x = _grid(n, 120, seed=n)
    ours, theirs = kolmogorov_sf(n, x), kstwo.sf(x, n)
    np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-13)


@pytest.mark.parametrize("n", [1, 7, 60, 1000, 2500])
def test_equal_size_probability_matches_scipy(n: int) -> None:
    h = np.unique(np.r_[0, 1, 2, n // 3, n, np.linspace(1, n, 60).astype(np.int64)])
    theirs = np.array([1.0 if value == 0 else _compute_prob_outside_square(n, int(value)) for value in h])
    np.testing.assert_allclose(prob_outside_square(n, h), np.clip(theirs, 0, 1), rtol=1e-9, atol=1e-300)


def test_smirnov_and_durbin_pieces_match_scipy() -> None:
    for n in (3, 40, 140, 500):
        x = np.linspace(1 / n, 1 - 1 / n, 202)[1:-1]
        np.testing.assert_allclose(smirnov_sf(n, x), smirnov(n, x), rtol=1e-9, atol=1e-300)
        # Where scipy computes exactly (Durbin or Pomeranz): all x < 2/sqrt(n) up to n = 140, small x beyond.
        top = 2 / np.sqrt(n) if n <= 140 else 0.99 * (1.4 / n) ** (2 / 3)
        small = np.linspace(0.51 / n, min(0.99, top), 40)
        np.testing.assert_allclose(1 - durbin_cdf(n, small), kstwo.sf(small, n), rtol=1e-8, atol=1e-13)


def test_shape_is_kept_and_empty_input_is_fine() -> None:
    assert kolmogorov_sf(50, np.zeros((2, 3))).shape == (2, 3)
    assert kolmogorov_sf(50, np.array([])).shape == (0,)
    assert prob_outside_square(10, np.array([], dtype=np.int64)).shape == (0,)
