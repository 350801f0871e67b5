"""Domain classifier: can a model tell reference from current? Cross-validated ROC-AUC of a logistic regression.

AUC 0.5 means the windows are indistinguishable; the further above, the more they differ, in a
way any direction of change can show (MMD can miss a shift a linear boundary finds, and back).
Written out instead of calling scikit-learn because a window has a 200 ms budget and
`cross_val_predict` spends most of it on cloning and dispatch: a randomised PCA to a few
dozen dimensions, then L2-penalised Newton steps on a (k+1)×(k+1) Hessian, converge in a few
milliseconds. The objective is scikit-learn's (`LogisticRegression(C=...)`, intercept
unpenalised) and the tests hold the two to the same coefficients.

The statistic is the mean of the folds' AUCs (each fold's model scores only rows it never saw).
Its p-value is the Mann-Whitney normal approximation with the variance of one fold: the folds'
AUCs correlate, so dividing by k would be anti-conservative (measured: 12% false alarms at
alpha 0.05); one fold's variance is an upper bound, so the test is conservative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit
from scipy.stats import norm, rankdata

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class ClassifierResult:
    auc: float
    p_value: float
    folds: int
    dims: int


def principal_axes(z: Array, dims: int, rng: np.random.Generator, power_iterations: int = 2) -> tuple[Array, Array]:
    """Mean and the top `dims` principal directions (rows) of z, by Halko et al.'s randomised range finder."""
    mean = z.mean(axis=0)
    centred = z - mean
    dims = min(dims, *z.shape)
    probe = rng.standard_normal((z.shape[1], min(dims + 10, z.shape[1]))).astype(z.dtype)
    basis, _ = np.linalg.qr(centred @ probe)
    for _ in range(power_iterations):
        basis, _ = np.linalg.qr(centred.T @ basis)
        basis, _ = np.linalg.qr(centred @ basis)
    _, _, vt = np.linalg.svd(basis.T @ centred, full_matrices=False)
    return mean, vt[:dims]


def randomized_pca(z: Array, dims: int, rng: np.random.Generator) -> Array:
    """Scores of the rows of z on their own top `dims` principal directions."""
    mean, axes = principal_axes(z, dims, rng)
    return np.asarray((z - mean) @ axes.T)


def fit_logistic(features: Array, labels: Array, c: float = 1.0, max_iter: int = 50, tol: float = 1e-8) -> Array:
    """Coefficients [w..., b] minimising sum(log-loss) + |w|²/(2C), as scikit-learn's lbfgs does."""
    x = np.hstack([features.astype(np.float64), np.ones((len(features), 1))])
    beta = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], 1.0 / c)
    penalty[-1] = 0.0
    for _ in range(max_iter):
        p = expit(x @ beta)
        grad = x.T @ (p - labels) + penalty * beta
        hess = (x.T * (p * (1.0 - p))) @ x + np.diag(penalty) + 1e-10 * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        beta -= step
        if float(np.max(np.abs(step))) < tol:
            break
    return beta


def auc_score(scores: Array, labels: Array) -> float:
    """ROC-AUC as the Mann-Whitney U over average ranks (ties count half), labels 1 = current."""
    ranks = rankdata(scores)
    positives = labels.astype(bool)
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def domain_classifier(x: Array, y: Array, rng: np.random.Generator, folds: int = 5, pca_dims: int | None = 32,
                      c: float = 1.0) -> ClassifierResult:
    """Out-of-fold AUC of telling `y` (current, label 1) from `x` (reference, label 0), stratified folds."""
    n, m = len(x), len(y)
    z = np.concatenate([x, y]).astype(np.float32, copy=False)
    features = randomized_pca(z, pca_dims, rng) if pca_dims else z - z.mean(axis=0)
    labels = np.concatenate([np.zeros(n), np.ones(m)])
    folds = max(2, min(folds, n, m))
    fold_of = np.empty(n + m, dtype=np.int64)
    fold_of[rng.permutation(n)] = np.arange(n) % folds
    fold_of[n + rng.permutation(m)] = np.arange(m) % folds
    aucs, variances, weights = [], [], []
    for fold in range(folds):
        test = fold_of == fold
        beta = fit_logistic(features[~test], labels[~test], c)
        scores = features[test].astype(np.float64) @ beta[:-1] + beta[-1]
        pos = int(labels[test].sum())
        neg = int(test.sum()) - pos
        aucs.append(auc_score(scores, labels[test]))
        variances.append((pos + neg + 1) / (12.0 * pos * neg))
        weights.append(pos * neg)
    w = np.asarray(weights, dtype=np.float64) / sum(weights)
    auc = float(w @ np.asarray(aucs))
    # Each fold's AUC has exactly the Mann-Whitney null variance, but the folds share training rows
    # and their AUCs correlate (measured +0.2 to +0.3), so the variance of their mean is bounded by
    # the folds' own (correlation 1) rather than divided by k: conservative, never anti-conservative.
    z_score = (auc - 0.5) / math.sqrt(float(w @ np.asarray(variances)))
    return ClassifierResult(auc=auc, p_value=float(norm.sf(z_score)), folds=folds, dims=features.shape[1])
