"""The kernel work of `drift.kernel` in torch, for a GPU: same splits, same statistics, same p-values.

The permutation signs come from the same numpy generator as the CPU path, so a seeded window
gives the same p-values on either (up to float32 rounding of the forms). torch is imported
here only, and only when a config asks for `cuda` or `auto`: the proxy never pays its import
otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from drift.kernel import MEDIAN_POINTS, PermutationResult, cosine_distances, permutation_p, split_masks, split_mmd2

Array = np.ndarray[Any, Any]


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def permutation_tests_torch(x: Array, y: Array, permutations: int, rng: np.random.Generator,
                            device: str = "cuda") -> PermutationResult:
    import torch

    n, m = len(x), len(y)
    masks_np = split_masks(n, m, permutations, rng)
    total = n + m
    pick = np.sort(rng.choice(total, size=min(total, MEDIAN_POINTS), replace=False))
    with torch.no_grad():
        z = torch.from_numpy(np.concatenate([x, y]).astype(np.float32, copy=False)).to(device)
        masks = torch.from_numpy(masks_np).to(device)
        sq_dist = torch.cdist(z, z).square_()
        idx = torch.from_numpy(pick).to(device)
        sub = sq_dist.index_select(0, idx).index_select(1, idx)
        upper = sub[torch.triu(torch.ones_like(sub, dtype=torch.bool), diagonal=1)]
        sigma2 = float(upper.median()) if upper.numel() else 0.0
        if sigma2 <= 0:
            mean = float(upper.mean()) if upper.numel() else 0.0
            sigma2 = mean if mean > 0 else 1.0
        kernel = sq_dist.mul_(-0.5 / sigma2).exp_()
        sxx = (masks * (kernel @ masks)).sum(dim=0, dtype=torch.float64)
        row_sums = kernel.sum(dim=1, dtype=torch.float64)
        masks64 = masks.double()
        a_rows, a_diag = masks64.T @ row_sums, masks64.T @ kernel.diagonal().double()
        sum_x = z.T @ masks
        sum_all = z.sum(dim=0)[:, None]
        mmd = split_mmd2(sxx.cpu().numpy(), a_rows.cpu().numpy(), float(row_sums.sum()), a_diag.cpu().numpy(),
                         float(kernel.diagonal().double().sum()), n, m)
        mean_x, mean_y = (sum_x / n).cpu().numpy(), ((sum_all - sum_x) / m).cpu().numpy()
    distances = cosine_distances(mean_x, mean_y)
    return PermutationResult(
        mmd2=float(mmd[0]), mmd_p=permutation_p(mmd, 1.0), bandwidth=sigma2,
        centroid_distance=float(distances[0]), centroid_p=permutation_p(distances, 1.0),
    )
