"""Permutation MMD and centroid tests: the all-at-once quadratic forms equal a plain loop; torch equals numpy."""

from __future__ import annotations

import numpy as np
import pytest

from drift.kernel import median_bandwidth, permutation_tests, split_masks


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray, sigma2: float) -> float:
    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d: np.ndarray = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return np.exp(-d / (2 * sigma2))

    n, m = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float((kxx.sum() - n) / (n * (n - 1)) + (kyy.sum() - m) / (m * (m - 1)) - 2 * kxy.mean())


def test_matches_a_plain_loop_over_permutations() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 5))
    y = rng.standard_normal((30, 5)) + 0.4
    result = permutation_tests(x, y, 99, np.random.default_rng(7))
    assert result.mmd2 == pytest.approx(_mmd2_unbiased(x, y, result.bandwidth), rel=1e-4)
    # Replay the same splits one by one, as a textbook permutation test would.
    gen = np.random.default_rng(7)
    masks = split_masks(40, 30, 99, gen)
    z = np.concatenate([x, y])
    stats = []
    for col in masks.T:
        stats.append(_mmd2_unbiased(z[col > 0], z[col == 0], result.bandwidth))
    expected_p = (1 + sum(s >= stats[0] - 1e-9 for s in stats[1:])) / 100
    assert result.mmd_p == pytest.approx(expected_p)
    means = [(z[col > 0].mean(0), z[col == 0].mean(0)) for col in masks.T]
    cos = [1 - a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in means]
    assert result.centroid_distance == pytest.approx(cos[0], rel=1e-4)
    assert result.centroid_p == pytest.approx((1 + sum(c >= cos[0] - 1e-9 for c in cos[1:])) / 100)


def test_splits_are_the_draws_of_shuffling_the_0_1_rows() -> None:
    """Shuffling indices takes the same draws as shuffling the labels: seeded p-values did not change."""
    for n, m, permutations in [(40, 30, 99), (5, 8, 3)]:
        gen = np.random.default_rng(11)
        base = np.concatenate([np.ones(n, np.float32), np.zeros(m, np.float32)])
        expected = np.vstack([base, gen.permuted(np.broadcast_to(base, (permutations, n + m)), axis=1)]).T
        ours = np.random.default_rng(11)
        np.testing.assert_array_equal(split_masks(n, m, permutations, ours), expected)
        assert ours.random() == gen.random()  # the generator is left where it was


def test_median_heuristic_and_its_fallback() -> None:
    rng = np.random.default_rng(1)
    z = rng.standard_normal((50, 3))
    sq = ((z[:, None] - z[None]) ** 2).sum(-1)
    assert median_bandwidth(sq, rng) == pytest.approx(np.median(sq[np.triu_indices(50, 1)]))
    assert median_bandwidth(np.zeros((10, 10)), rng) == 1.0  # all points equal: no bandwidth, no crash


def test_identical_rows_do_not_break_the_test() -> None:
    x = np.ones((20, 4), dtype=np.float32)
    result = permutation_tests(x, x.copy(), 50, np.random.default_rng(0))
    assert result.mmd_p == 1.0 and result.centroid_p == 1.0


def test_torch_path_equals_numpy_path() -> None:
    pytest.importorskip("torch")
    from drift.torch_kernel import permutation_tests_torch

    rng = np.random.default_rng(2)
    x = rng.standard_normal((120, 24)).astype(np.float32)
    y = (rng.standard_normal((100, 24)) + 0.15).astype(np.float32)
    a = permutation_tests(x, y, 200, np.random.default_rng(5))
    b = permutation_tests_torch(x, y, 200, np.random.default_rng(5), device="cpu")
    assert b.bandwidth == pytest.approx(a.bandwidth, rel=1e-4)
    assert b.mmd2 == pytest.approx(a.mmd2, rel=1e-3, abs=1e-6)
    assert b.mmd_p == pytest.approx(a.mmd_p, abs=0.011)  # at most one permutation's float32 rounding apart
    assert b.centroid_distance == pytest.approx(a.centroid_distance, rel=1e-4)
