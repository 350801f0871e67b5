"""The hand-written domain classifier matches scikit-learn's pieces and separates shifted windows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from drift.classifier import auc_score, domain_classifier, fit_logistic, principal_axes


def test_logistic_regression_matches_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    features = rng.standard_normal((400, 12))
    labels = (features @ rng.standard_normal(12) + rng.standard_normal(400) > 0).astype(float)
    for c in (0.1, 1.0):
        ours = fit_logistic(features, labels, c=c)
        ref = LogisticRegression(C=c, tol=1e-10, max_iter=10_000).fit(features, labels)
        np.testing.assert_allclose(ours[:-1], ref.coef_[0], atol=1e-5)
        assert ours[-1] == pytest.approx(ref.intercept_[0], abs=1e-5)


def test_auc_matches_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(1)
    scores = np.round(rng.standard_normal(300), 1)
    labels = (rng.uniform(size=300) < 0.4).astype(float)
    assert auc_score(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_principal_axes_span_scikit_learn_pca() -> None:
    rng = np.random.default_rng(2)
    z = rng.standard_normal((500, 40)) * np.r_[np.linspace(6, 3, 5), np.full(35, 0.5)]
    _, ours = principal_axes(z, 5, np.random.default_rng(3))
    theirs = PCA(5).fit(z).components_
    # The same subspace: projecting one basis onto the other keeps its length.
    np.testing.assert_allclose(np.linalg.norm(ours @ theirs.T, axis=1), 1.0, atol=1e-4)


def test_separates_shifted_windows_and_not_identical_ones() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((300, 32)).astype(np.float32)
    y = rng.standard_normal((300, 32)).astype(np.float32)
    same = domain_classifier(x, y, np.random.default_rng(0), pca_dims=16)
    assert 0.4 < same.auc < 0.6 and same.p_value > 0.05 and same.folds == 5 and same.dims == 16
    shifted = domain_classifier(x, y + 0.3, np.random.default_rng(0), pca_dims=16)
    assert shifted.auc > 0.8 and shifted.p_value < 1e-6
