"""The domain classifier of `drift.classifier` in torch: same PCA, same folds, same fit, same p-value.

What must match the numpy path comes from the same numpy generator in the same order: the
PCA's random probe, then the fold assignment; only the arithmetic moves to the device. The
randomised range finder's subspace does not depend on how each step's basis is orthonormalised
(here: through small Gram matrices factored on the host, see `orthonormal_columns`), and a sign
flip of a principal axis flips its coefficient and leaves every score unchanged (the penalty
is symmetric), so the folds' AUCs agree with numpy's up to float32 rounding of the PCA.

On a GPU, small loops over folds cost a launch and a sync each, so the folds are fitted
together: fold f's training rows carry weight 1 in row f of a (folds × rows) weight matrix,
its test rows 0, and one batched Newton step serves every fold. A fold stops moving once its
step is under the tolerance, as it would alone. Each fold's AUC is the Mann-Whitney count
(ties half) read off a batched `searchsorted` of its positives into its sorted negatives.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import norm

from drift.classifier import ClassifierResult
from drift.torch_kernel import pooled_tensor

if TYPE_CHECKING:
    import torch

Array = np.ndarray[Any, Any]


def principal_axes_torch(z: torch.Tensor, dims: int, rng: np.random.Generator,
                         power_iterations: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """`drift.classifier.principal_axes` on z's device: mean and top `dims` directions (rows)."""
    import torch

    mean = z.mean(dim=0)
    centred = z - mean
    dims = min(dims, *z.shape)
    probe_np = rng.standard_normal((z.shape[1], min(dims + 10, z.shape[1]))).astype(np.float32)
    probe = torch.from_numpy(probe_np).to(device=z.device, dtype=z.dtype)
    basis = orthonormal_columns(centred @ probe)
    for _ in range(power_iterations):
        basis = orthonormal_columns(centred.T @ basis)
        basis = orthonormal_columns(centred @ basis)
    return mean, top_right_singular_vectors(basis.T @ centred, dims)


def with_mean_direction_torch(axes: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """`drift.compare.with_mean_direction` on the axes' device."""
    import torch

    rest = mean - axes.T @ (axes @ mean)
    norm = float(torch.linalg.vector_norm(rest))
    if norm <= 1e-6 * max(float(torch.linalg.vector_norm(mean)), 1e-30):
        return axes
    return torch.cat([axes, (rest / norm)[None, :]])


def orthonormal_columns(a: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis of a's column space (a tall and thin): Cholesky-QR on the float64 Gram matrix.

    The range finder needs the span, not Householder's particular basis. cuSOLVER's QR costs a
    fraction of a millisecond per call at this size, several times over; a (k × k) Gram matrix to
    the host, its Cholesky factor in numpy and one product back cost a few tens of microseconds.
    float64 keeps the squared condition number harmless. A Gram matrix that is not positive
    definite (rank-deficient windows: constant or duplicated rows) takes the Householder QR.
    """
    import torch

    wide = a.double()
    try:
        upper = np.linalg.cholesky((wide.T @ wide).cpu().numpy()).T
    except np.linalg.LinAlgError:
        householder: torch.Tensor = torch.linalg.qr(a).Q
        return householder
    inverse = torch.from_numpy(np.linalg.inv(upper)).to(a.device)
    return (wide @ inverse).to(a.dtype)


def top_right_singular_vectors(b: torch.Tensor, dims: int) -> torch.Tensor:
    """The top `dims` right singular vectors (rows) of a short, wide b, from the eigenvectors of b·bᵀ.

    numpy's path takes them from an SVD of b; on a GPU a small SVD is a slow cuSOLVER call, and b·bᵀ
    is (k × k), decomposed on the host in float64. Vanishing singular values (rank-deficient
    windows), where dividing by them would amplify noise, take torch's SVD instead.
    """
    import torch

    wide = b.double()
    values, vectors = np.linalg.eigh((wide @ wide.T).cpu().numpy())
    top = np.argsort(values)[::-1][:dims]
    if values[top[-1]] <= 1e-10 * max(values[top[0]], 0.0):
        vt: torch.Tensor = torch.linalg.svd(b, full_matrices=False)[2]
        return vt[:dims]
    scale = vectors[:, top].T / np.sqrt(values[top])[:, None]
    return (torch.from_numpy(np.ascontiguousarray(scale)).to(b.device) @ wide).to(b.dtype)


def fit_logistic_folds(features: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, c: float = 1.0,
                       max_iter: int = 50, tol: float = 1e-8) -> torch.Tensor:
    """Per fold (a row of `weights`), the coefficients [w..., b] that `drift.classifier.fit_logistic` finds
    on that fold's rows; `features` already carries the column of ones."""
    import torch

    folds, width = weights.shape[0], features.shape[1]
    beta = torch.zeros((folds, width), dtype=features.dtype, device=features.device)
    penalty = torch.full((width,), 1.0 / c, dtype=features.dtype, device=features.device)
    penalty[-1] = 0.0
    ridge = torch.diag(penalty) + 1e-10 * torch.eye(width, dtype=features.dtype, device=features.device)
    active = torch.ones(folds, dtype=torch.bool, device=features.device)
    for _ in range(max_iter):
        p = torch.sigmoid(beta @ features.T)  # folds × rows
        grad = (weights * (p - labels)) @ features + penalty * beta
        curvature = weights * p * (1.0 - p)
        hess = (features.T * curvature[:, None, :]) @ features + ridge
        step = torch.linalg.solve_ex(hess, grad).result  # no error check: on a GPU that is a sync per call
        beta -= step * active[:, None]
        active &= step.abs().amax(dim=1) >= tol
        if not bool(active.any()):
            break
    return beta


def fold_aucs(scores: torch.Tensor, positive: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """Per fold (a row of `scores` and `test`), the ROC-AUC over its test rows, label `positive`, ties half."""
    import torch

    negatives = torch.where(test & ~positive, scores, torch.full_like(scores, math.inf)).sort(dim=1).values
    below = torch.searchsorted(negatives, scores.contiguous(), right=False)
    through = torch.searchsorted(negatives, scores.contiguous(), right=True)
    credit = (below + through).to(scores.dtype) * 0.5  # negatives under the score, ties counted half
    pos = test & positive
    n_pos, n_neg = pos.sum(dim=1), (test & ~positive).sum(dim=1)
    return (credit * pos).sum(dim=1) / (n_pos * n_neg).to(scores.dtype)


def domain_classifier_torch(x: Array, y: Array, rng: np.random.Generator, folds: int = 5,
                            pca_dims: int | None = 32, c: float = 1.0, device: str = "cuda") -> ClassifierResult:
    return domain_classifier_pooled(pooled_tensor(x, y, device), len(x), rng, folds, pca_dims, c)


def domain_classifier_pooled(z: torch.Tensor, n: int, rng: np.random.Generator, folds: int = 5,
                             pca_dims: int | None = 32, c: float = 1.0) -> ClassifierResult:
    """`drift.classifier.domain_classifier` on pooled rows `z` (the first `n` the reference), on z's device."""
    import torch

    m = z.shape[0] - n
    with torch.no_grad():
        if pca_dims:
            mean, axes = principal_axes_torch(z, pca_dims, rng)
            features = (z - mean) @ axes.T
        else:
            features = z - z.mean(dim=0)
        folds = max(2, min(folds, n, m))
        fold_of = np.empty(n + m, dtype=np.int64)
        fold_of[rng.permutation(n)] = np.arange(n) % folds
        fold_of[n + rng.permutation(m)] = np.arange(m) % folds
        test_np = fold_of[None, :] == np.arange(folds)[:, None]
        positive_np = np.arange(n + m) >= n
        test = torch.from_numpy(test_np).to(z.device)
        positive = torch.from_numpy(positive_np).to(z.device)
        design = torch.cat([features.double(), torch.ones((n + m, 1), dtype=torch.float64, device=z.device)], dim=1)
        beta = fit_logistic_folds(design, positive.double(), (~test).double(), c)
        aucs = fold_aucs(beta @ design.T, positive, test).cpu().numpy()
    pos = (test_np & positive_np).sum(axis=1).astype(np.float64)
    neg = (test_np & ~positive_np).sum(axis=1).astype(np.float64)
    w = pos * neg / float(np.sum(pos * neg))
    auc = float(w @ aucs)
    # The numpy path's conservative variance: one fold's Mann-Whitney variance, not divided by k.
    z_score = (auc - 0.5) / math.sqrt(float(w @ ((pos + neg + 1) / (12.0 * pos * neg))))
    return ClassifierResult(auc=auc, p_value=float(norm.sf(z_score)), folds=folds, dims=int(features.shape[1]))
