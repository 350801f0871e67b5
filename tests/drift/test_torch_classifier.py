"""The torch domain classifier (run on the CPU here) reproduces the numpy path: its fit, its AUCs, its verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from drift.classifier import auc_score, domain_classifier, fit_logistic, principal_axes

torch = pytest.importorskip("torch")

from drift.torch_classifier import (  # noqa: E402
    domain_classifier_torch,
    fit_logistic_folds,
    fold_aucs,
    principal_axes_torch,
)


def _unit_rows(rows: int, dims: int, shift: float, seed: int) -> np.ndarray:
    z = np.random.default_rng(seed).standard_normal((rows, dims)).astype(np.float32) + shift
    unit: np.ndarray = z / np.linalg.norm(z, axis=1, keepdims=True)
    return unit


@pytest.mark.parametrize("shift", [0.0, 0.02, 0.06])
def test_bench_sized_windows_match_numpy(shift: float) -> None:
    """1,000 × 1,000 × 384 as in bench/drift.py: no shift, the bench's shift, a clear one."""
    x, y = _unit_rows(1000, 384, 0.0, seed=1), _unit_rows(1000, 384, shift, seed=2)
    theirs = domain_classifier(x, y, np.random.default_rng(3))
    ours = domain_classifier_torch(x, y, np.random.default_rng(3), device="cpu")
    assert ours.auc == pytest.approx(theirs.auc, abs=1e-4)
    assert ours.p_value == pytest.approx(theirs.p_value, rel=1e-2, abs=1e-4)
    assert (ours.folds, ours.dims) == (theirs.folds, theirs.dims) == (5, 32)
    assert (ours.p_value < 0.05) == (theirs.p_value < 0.05)


def test_small_unequal_windows_without_pca_match_numpy() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((150, 12)).astype(np.float32)
    y = (rng.standard_normal((90, 12)) + 0.25).astype(np.float32)
    theirs = domain_classifier(x, y, np.random.default_rng(0), folds=4, pca_dims=None, c=0.5)
    ours = domain_classifier_torch(x, y, np.random.default_rng(0), folds=4, pca_dims=None, c=0.5, device="cpu")
    assert ours.auc == pytest.approx(theirs.auc, abs=1e-6) and ours.auc > 0.6
    assert ours.p_value == pytest.approx(theirs.p_value, rel=1e-5)
    assert (ours.folds, ours.dims) == (4, 12)


def test_batched_newton_fits_each_fold_as_numpy_does() -> None:
    rng = np.random.default_rng(5)
    features = rng.standard_normal((300, 6))
    labels = (features @ rng.standard_normal(6) + rng.standard_normal(300) > 0).astype(float)
    folds = rng.integers(0, 3, 300)
    design = torch.from_numpy(np.hstack([features, np.ones((300, 1))]))
    train = torch.from_numpy((folds[None, :] != np.arange(3)[:, None]).astype(float))
    betas = fit_logistic_folds(design, torch.from_numpy(labels), train, c=0.3).numpy()
    for fold in range(3):
        keep = folds != fold
        np.testing.assert_allclose(betas[fold], fit_logistic(features[keep], labels[keep], c=0.3), atol=1e-9)


def test_fold_aucs_count_ties_half_as_the_numpy_auc_does() -> None:
    rng = np.random.default_rng(6)
    scores = np.round(rng.standard_normal((3, 200)), 1)  # many ties
    positive = rng.uniform(size=200) < 0.4
    test = rng.uniform(size=(3, 200)) < 0.5
    ours = fold_aucs(torch.from_numpy(scores), torch.from_numpy(positive), torch.from_numpy(test)).numpy()
    for fold in range(3):
        keep = test[fold]
        assert ours[fold] == pytest.approx(auc_score(scores[fold, keep], positive[keep].astype(float)), abs=1e-12)


def test_principal_axes_span_the_numpy_ones() -> None:
    rng = np.random.default_rng(2)
    z = (rng.standard_normal((500, 40)) * np.r_[np.linspace(6, 3, 5), np.full(35, 0.5)]).astype(np.float32)
    _, theirs = principal_axes(z, 5, np.random.default_rng(3))
    mean, ours = principal_axes_torch(torch.from_numpy(z), 5, np.random.default_rng(3))
    np.testing.assert_allclose(mean.numpy(), z.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(np.abs(ours.numpy() @ theirs.T), np.eye(5), atol=1e-4)  # same axes, up to sign


@pytest.mark.parametrize("kind", ["constant", "rank 5"])
def test_degenerate_windows_match_numpy(kind: str) -> None:
    """Rank-deficient windows, where the Gram-matrix shortcuts fall back to torch's QR and SVD."""
    rng = np.random.default_rng(8)
    if kind == "constant":
        x = y = np.ones((50, 384), dtype=np.float32)
    else:
        basis = rng.standard_normal((5, 384))
        x, y = ((rng.standard_normal((300, 5)) @ basis).astype(np.float32) for _ in range(2))
    theirs = domain_classifier(x, y, np.random.default_rng(0))
    ours = domain_classifier_torch(x, y, np.random.default_rng(0), device="cpu")
    assert ours.auc == pytest.approx(theirs.auc, abs=1e-4) and ours.p_value > 0.05 and theirs.p_value > 0.05
