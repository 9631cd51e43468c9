"""First and second moments of a batch of pooled embeddings, shared by the methods.

IsoBN's :func:`isobn.functional.batch_statistics` returns the std and covariance only; whitening
also needs the mean, and the regularisers need moments that carry gradients. Same conventions:
float64 (float32 on MPS), autocast off, additive statistics all-reduced with
:func:`isobn.distributed.all_reduce_sum` (a no-op on one process).
"""

from __future__ import annotations

import torch
from torch import Tensor

from isobn.distributed import all_reduce_sum, world_size
from isobn.functional import statistics_dtype


def _synced(local: Tensor, process_group, differentiable: bool) -> Tensor:
    """Sum of `local` over ranks; with `differentiable`, the gradient reaches this rank's term.

    The value is the all-reduced sum of detached tensors; ``local - local.detach()`` (zero in
    value) then carries this rank's gradient, so other ranks' rows act as constants. On one
    process this is exactly the local tensor with its full gradient.
    """
    total = all_reduce_sum(local.detach().clone(), process_group)
    return total + (local - local.detach()) if differentiable else total


def moments(
    x: Tensor, process_group=None, differentiable: bool = False
) -> tuple[int, Tensor, Tensor]:
    """Count, mean and scatter matrix of the rows of x over all ranks of `process_group`.

    Args:
        x: (N, D) rows; promoted to float64 (float32 on MPS) with autocast off.
        process_group: torch.distributed group; a no-op on one process.
        differentiable: keep x's graph (otherwise x is detached first).

    Returns:
        n: global number of rows (a Python int);
        mean: (D,) global mean;
        scatter: (D, D) sum over all rows of (x - mean)(x - mean)^T, centred on the global mean
            (divide by n for the population covariance, by n - 1 for the unbiased one).

    Two all-reduces, (n, sum x) then the centred scatter, as in IsoBN: the result equals the
    single-process moments of the concatenated batch and stays exact far from zero.
    """
    assert x.dim() == 2, f"expected (N, D), got {tuple(x.shape)}"
    dtype = statistics_dtype(x.device)
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = (x if differentiable else x.detach()).to(dtype)  # (N, D)
        count_and_sum = torch.cat([x.new_tensor([x.shape[0]]), x.sum(0)])  # (1 + D,)
        count_and_sum = _synced(count_and_sum, process_group, differentiable)
        n = x.shape[0] if world_size(process_group) == 1 else int(count_and_sum[0].item())
        mean = count_and_sum[1:] / max(n, 1)  # (D,)
        y = x - mean  # (N, D)
        scatter = _synced(y.T @ y, process_group, differentiable)  # (D, D)
    return n, mean, scatter
