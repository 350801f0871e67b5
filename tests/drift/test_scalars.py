"""PSI on scalar signals: zero for the same distribution, the textbook value for a known shift."""

from __future__ import annotations

import numpy as np
import pytest

from drift.scalars import compare_scalar, psi


def test_psi_known_values() -> None:
    reference = np.repeat(np.arange(10.0), 100)  # ten equal bins
    assert psi(reference, reference) == pytest.approx(0.0)
    current = np.repeat(np.arange(10.0), [55] * 5 + [145] * 5)  # 5.5% then 14.5% per bin
    expected = 5 * (0.055 - 0.1) * np.log(0.055 / 0.1) + 5 * (0.145 - 0.1) * np.log(0.145 / 0.1)
    assert psi(reference, current) == pytest.approx(expected, rel=1e-9)


def test_rates_that_are_mostly_zero() -> None:
    rng = np.random.default_rng(0)
    reference = (rng.uniform(size=2000) < 0.02).astype(float)
    same = (rng.uniform(size=2000) < 0.02).astype(float)
    higher = (rng.uniform(size=2000) < 0.2).astype(float)
    assert compare_scalar("pii_rate", reference, same).psi < 0.05
    shifted = compare_scalar("pii_rate", reference, higher)
    assert shifted.psi > 0.2 and shifted.p_value < 1e-6
    assert shifted.current_mean == pytest.approx(higher.mean())
