"""Stateless IsoBN math: batch statistics, running-estimate updates and the IsoBN scale.

Notation (Zhou, Lin, Ren, "IsoBN: Fine-Tuning BERT with Isotropic Batch Normalization", AAAI 2021):
x is a batch of shape (B, D); every statistic is a population (biased, divide by B) moment.

    y     = x - mean_B(x)                      # (B, D)
    s_b   = sqrt(mean_B(y ** 2))               # (D,)   batch std
    C_b   = y^T y / B                          # (D, D) batch covariance
    corr  = clamp(cov / (std std^T), -1, 1)    # (D, D)
    gamma = mean_j corr_ij ** 2                # (D,)
    scale = (gamma * std + eps) ** -beta       # (D,)
    scale = scale * sqrt(tr(cov) / (sum_i cov_ii scale_i ** 2 + eps))
"""

from __future__ import annotations

import torch
from torch import Tensor

from isobn.distributed import all_reduce_sum


def statistics_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device has it (MPS has no float64), for exact centring and sums."""
    return torch.float32 if device.type == "mps" else torch.float64


def batch_statistics(x: Tensor, process_group=None) -> tuple[int, Tensor, Tensor]:
    """Count, batch std and batch covariance of x over all ranks of `process_group`.

    Args:
        x: (N, D) rows; detached and promoted to float64 (float32 on MPS), autocast off.
        process_group: torch.distributed group; a no-op on one process.

    Returns:
        n: global number of rows; s_b: (D,) population std; C_b: (D, D) population covariance.

    Two all-reduces of additive statistics: (n, sum x), then sum (x - mean)(x - mean)^T around
    the global mean, so the result equals single-process statistics of the concatenated batch
    and stays exact for data far from zero.
    """
    assert x.dim() == 2, f"expected (N, D), got {tuple(x.shape)}"
    dtype = statistics_dtype(x.device)
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.detach().to(dtype)  # (N, D)
        count_and_sum = torch.cat([x.new_tensor([x.shape[0]]), x.sum(0)])  # (1 + D,)
        count_and_sum = all_reduce_sum(count_and_sum, process_group)
        n = int(count_and_sum[0].item())
        mean = count_and_sum[1:] / max(n, 1)  # (D,)
        y = x - mean  # (N, D)
        cov = all_reduce_sum(y.T @ y, process_group) / max(n, 1)  # (D, D)
    std = cov.diagonal().clamp_min(0).sqrt()  # (D,)
    return n, std, cov


def safe_correlation(cov: Tensor, std: Tensor) -> Tensor:
    """corr = clamp(cov / (std std^T), -1, 1); pairs with a zero-std dimension count as 0.

    The diagonal is 1 by definition (for the released running estimates it is >= 1 by Jensen's
    inequality and clamps to 1 anyway). Shapes: cov (D, D), std (D,) -> (D, D).
    """
    denom = torch.outer(std, std)  # (D, D)
    corr = torch.where(denom > 0, cov / torch.where(denom > 0, denom, 1.0), 0.0)
    corr = corr.clamp(-1.0, 1.0)
    corr.fill_diagonal_(1.0)
    return corr


def isobn_scale(
    std: Tensor,
    cov: Tensor,
    beta: float = 0.5,
    eps: float = 1e-3,
    use_correlation: bool = True,
) -> Tensor:
    """Per-dimension IsoBN scale (D,) from a std (D,) and covariance (D, D).

    scale_i = (gamma_i std_i + eps) ** -beta with gamma_i = mean_j corr_ij ** 2 (gamma = 1 when
    `use_correlation` is False), then rescaled so that sum_i cov_ii scale_i ** 2 = tr(cov) (up to
    eps). With no variance at all (tr(cov) == 0) the scale is 1: nothing to preserve.
    beta = 0 gives exactly 1 everywhere.
    """
    if beta == 0:
        return torch.ones_like(std)
    if use_correlation:
        gamma = safe_correlation(cov, std).square().mean(1)  # (D,)
    else:
        gamma = torch.ones_like(std)
    scale = (gamma * std + eps).pow(-beta)  # (D,)
    variance = cov.diagonal()  # (D,)
    total = variance.sum()
    if total <= 0:
        return torch.ones_like(std)
    return scale * (total / ((variance * scale.square()).sum() + eps)).sqrt()
