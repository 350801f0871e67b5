"""The column-wise KS statistic of `drift.ks` in torch: every column sorted at once on the device.

The numpy path packs value and label into one integer key because a CPU sorts plain integers
fastest; a GPU sorts (value, index) pairs as fast, and an index under n marks a reference row.
Ties follow the numpy path exactly: the ECDF difference n·m·(F_x - F_y), an integer, is read
only at the last of each run of equal values (-0.0 and 0.0 compare equal: one run).

The p-values stay on the CPU (`drift.ks.ks_p_values`): one D per column (384 numbers) crosses
back, and scipy's exact formulas, vectorised in `drift.kolmogorov`, cost well under a
millisecond for equal sizes and a few for unequal ones, less than a GPU port would save.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from drift.ks import ColumnKS, ks_p_values
from drift.torch_kernel import pooled_tensor

if TYPE_CHECKING:
    import torch

Array = np.ndarray[Any, Any]


def ks_columns_torch(x: Array, y: Array, method: Literal["auto", "asymp"] = "auto",
                     device: str = "cuda") -> ColumnKS:
    """`drift.ks.ks_columns` with the statistic computed by torch on `device`."""
    if len(x) == 0 or len(y) == 0:
        raise ValueError("KS needs two non-empty samples")
    return ks_pooled(pooled_tensor(x, y, device), len(x), method)


def ks_pooled(z: torch.Tensor, n: int, method: Literal["auto", "asymp"] = "auto") -> ColumnKS:
    """KS of every column of pooled rows `z` (the first `n` the reference) between the two samples."""
    m = z.shape[0] - n
    d = ks_statistic_pooled(z, n)
    return ColumnKS(statistic=d, p_value=ks_p_values(d, n, m, method))


def ks_statistic_pooled(z: torch.Tensor, n: int) -> Array:
    """D per column as float64 on the host, exact as in `drift.ks.ks_columns`."""
    import torch

    m = z.shape[0] - n
    if n == 0 or m == 0:
        raise ValueError("KS needs two non-empty samples")
    with torch.no_grad():
        if not bool(torch.isfinite(z).all()):
            raise ValueError("KS needs finite values")
        values, order = torch.sort(z.T.contiguous(), dim=1)
        wide = torch.int64 if n * m >= 2**31 else torch.int32
        up, down = torch.tensor(m, dtype=wide, device=z.device), torch.tensor(-n, dtype=wide, device=z.device)
        diff = torch.cumsum(torch.where(order < n, up, down), dim=1, dtype=wide)
        diff[:, :-1].masked_fill_(values[:, 1:] == values[:, :-1], 0)
        extreme = diff.abs().amax(dim=1)
        return np.asarray(extreme.cpu().numpy() / (n * m), dtype=np.float64)
