"""The kernel work of `drift.kernel` in torch, for a GPU: same splits, same statistics, same p-values.

The permutation splits come from the same numpy generator as the CPU path, so a seeded window
gives the same p-values on either (up to float32 rounding of the forms). torch is imported
here only, and only when a config asks for `cuda` or `auto`: the proxy never pays its import
otherwise. The functions take a `device`, and "cpu" runs the same torch code without a GPU,
which is how the tests hold it to the numpy path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from drift.kernel import MEDIAN_POINTS, PermutationResult, cosine_distances, permutation_p, split_labels, split_mmd2

if TYPE_CHECKING:
    import torch

Array = np.ndarray[Any, Any]


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pooled_tensor(x: Array, y: Array, device: str) -> torch.Tensor:
    """Both windows' rows, reference first, as one float32 tensor on `device`: one upload serves every statistic."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.concatenate([x, y]), dtype=np.float32)).to(device)


def permutation_tests_torch(x: Array, y: Array, permutations: int, rng: np.random.Generator,
                            device: str = "cuda") -> PermutationResult:
    return permutation_tests_pooled(pooled_tensor(x, y, device), len(x), permutations, rng)


def permutation_tests_pooled(z: torch.Tensor, n: int, permutations: int, rng: np.random.Generator) -> PermutationResult:
    """`drift.kernel.permutation_tests` on pooled rows `z` (the first `n` the reference), on z's device."""
    import torch

    total = z.shape[0]
    m = total - n
    labels = split_labels(n, m, permutations, rng)
    pick = np.sort(rng.choice(total, size=min(total, MEDIAN_POINTS), replace=False))
    with torch.no_grad():
        masks = torch.from_numpy(labels).to(z.device).float()
        sq_dist = torch.cdist(z, z).square_()
        idx = torch.from_numpy(pick).to(z.device)
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
        diagonal = kernel.diagonal().double()
        a_rows, a_diag = masks64.T @ row_sums, masks64.T @ diagonal
        sum_x = z.T @ masks
        sum_all = z.sum(dim=0)[:, None]
        host = [t.cpu().numpy() for t in (sxx, a_rows, row_sums.sum(), a_diag, diagonal.sum(), sum_x / n,
                                          (sum_all - sum_x) / m)]
    sxx_h, a_rows_h, total_h, a_diag_h, trace_h, mean_x, mean_y = host
    mmd = split_mmd2(sxx_h, a_rows_h, float(total_h), a_diag_h, float(trace_h), n, m)
    distances = cosine_distances(mean_x, mean_y)
    return PermutationResult(
        mmd2=float(mmd[0]), mmd_p=permutation_p(mmd, 1.0), bandwidth=sigma2,
        centroid_distance=float(distances[0]), centroid_p=permutation_p(distances, 1.0),
    )
