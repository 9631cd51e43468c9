"""Stateless math: batch moments (shared by every method) and the IsoBN scale (the running
estimates and their updates are in `isobn.running`).

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

import contextlib

import torch
from torch import Tensor

from isobn.distributed import all_reduce_sum, world_size
from isobn.isotropy import DEAD_RTOL


def autocast_off(device: torch.device):
    """A context with autocast disabled on `device` (nothing to disable on `meta`, which
    autocast does not know: shapes only)."""
    if device.type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, enabled=False)


def statistics_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device has it (MPS has no float64), for exact centring and sums."""
    return torch.float32 if device.type == "mps" else torch.float64


def _synced(local: Tensor, process_group, differentiable: bool) -> Tensor:
    """Sum of `local` over ranks; with `differentiable`, the gradient reaches this rank's term.

    The value is the all-reduced sum of detached tensors; ``local - local.detach()`` (zero in
    value) then carries this rank's gradient, so other ranks' rows act as constants. On one
    process this is exactly the local tensor with its full gradient.
    """
    if not differentiable:
        return all_reduce_sum(local, process_group)  # a fresh tensor: reduced in place
    total = all_reduce_sum(local.detach().clone(), process_group)
    return total + (local - local.detach())


def moments(
    x: Tensor, process_group=None, differentiable: bool = False
) -> tuple[int, Tensor, Tensor]:
    """Count, mean and scatter matrix of the rows of x over all ranks of `process_group`.

    Args:
        x: (N, D) rows; promoted to float64 (float32 on MPS) with autocast off.
        process_group: torch.distributed group; a no-op on one process.
        differentiable: keep x's graph (otherwise x is detached first): the regularisers and
            whitening's backprop option need moments that carry gradients.

    Returns:
        n: global number of rows (a Python int);
        mean: (D,) global mean;
        scatter: (D, D) sum over all rows of (x - mean)(x - mean)^T, centred on the global mean
            (divide by n for the population covariance, by n - 1 for the unbiased one).

    Two all-reduces of additive statistics: (n, sum x), then the scatter around the global
    mean, so the result equals the single-process moments of the concatenated batch and stays
    exact for data far from zero.
    """
    assert x.dim() == 2, f"expected (N, D), got {tuple(x.shape)}"
    dtype = statistics_dtype(x.device)
    with autocast_off(x.device):
        x = (x if differentiable else x.detach()).to(dtype)  # (N, D)
        count_and_sum = torch.cat([x.new_tensor([x.shape[0]]), x.sum(0)])  # (1 + D,)
        count_and_sum = _synced(count_and_sum, process_group, differentiable)
        # the local row count needs no device-to-host copy; the global one does
        n = x.shape[0] if world_size(process_group) == 1 else int(count_and_sum[0].item())
        mean = count_and_sum[1:] / max(n, 1)  # (D,)
        y = x - mean  # (N, D)
        scatter = _synced(y.T @ y, process_group, differentiable)  # (D, D)
    return n, mean, scatter


def batch_statistics(x: Tensor, process_group=None) -> tuple[int, Tensor, Tensor]:
    """Count, batch std and batch covariance of x (N, D), detached, over all ranks of
    `process_group` (see [`moments`][isobn.functional.moments]).

    Returns:
        n: global number of rows; s_b: (D,) population std; C_b: (D, D) population covariance,
        both float64 (float32 on MPS).

    On one process this takes a shorter path of 5 aten ops (cast, std_mean, centre, y^T y,
    divide): the same moments, equal to the all-reduce path up to float64 rounding.
    """
    if world_size(process_group) > 1:
        n, _, scatter = moments(x, process_group)
        cov = scatter / max(n, 1)  # (D, D)
        return n, cov.diagonal().clamp_min(0).sqrt(), cov
    n = x.shape[0]
    with torch.no_grad(), autocast_off(x.device):
        x = x.to(statistics_dtype(x.device))  # (N, D)
        std, mean = torch.std_mean(x, 0, correction=0)  # (D,), (D,)
        y = x - mean  # (N, D)
        cov = (y.T @ y).div_(max(n, 1))  # (D, D)
    return n, std, cov


# DEAD_RTOL (isobn.isotropy, the one definition the metrics and every method share): a
# dimension whose std is at most this fraction of the largest one is dead and its correlations
# are 0. The floor also bounds 1 / std, so no product below can overflow.


def mean_squared_correlation(cov: Tensor, std: Tensor, correction: Tensor | float = 1.0) -> Tensor:
    """gamma_i = mean_j clamp(corr_ij, -1, 1) ** 2 (D,) of the estimates cov / c and std / c.

    corr_ij = c cov_ij / (std_i std_j), computed as cov * a a^T with a = sqrt(c) / std in five
    passes over the (D, D) matrix. The diagonal is 1 by definition (for running estimates it is
    >= 1 by Jensen's inequality and clamps to 1 anyway); pairs with a dead dimension count as 0
    (a dead std is replaced by inf, so its a is exactly 0).
    """
    dead = std <= DEAD_RTOL * std.max()  # (D,)
    a = correction**0.5 / std.masked_fill(dead, float("inf"))  # (D,)
    corr = cov * a[:, None]  # (D, D)
    corr.mul_(a).clamp_(-1.0, 1.0)
    corr.diagonal().fill_(1.0)
    return corr.square_().mean(1)


def isobn_scale(
    std: Tensor,
    cov: Tensor,
    beta: float = 0.5,
    eps: float = 1e-3,
    use_correlation: bool = True,
    correction: Tensor | float = 1.0,
    count: Tensor | int = 1,
) -> Tensor:
    """Per-dimension IsoBN scale (D,) of the estimates std / c (D,) and cov / c (D, D).

    scale_i = (gamma_i std_i + eps) ** -beta with gamma_i = mean_j corr_ij ** 2 (gamma = 1 when
    `use_correlation` is False), then rescaled so that sum_i cov_ii scale_i ** 2 = tr(cov) (up to
    eps), written with the raw estimates as

        scale * sqrt(tr(cov) / (sum_i cov_ii scale_i ** 2 + eps c))

    (numerator and denominator multiplied by c). The scale is 1 where there is nothing to
    normalise: no variance at all (tr(cov) == 0), or no batch counted yet (`count` t == 0).
    beta = 0 gives exactly 1 everywhere. c is the bias correction 1 - (1 - m)^t (1: none).
    No host synchronisation: safe inside CUDA graphs and cheap on GPUs (28 aten ops).
    """
    if beta == 0:
        return torch.ones_like(std)
    base = std / correction  # (D,)
    if use_correlation:
        base = base * mean_squared_correlation(cov, std, correction)
    scale = base.add_(eps).pow_(-beta)  # (D,)
    variance = cov.diagonal()  # (D,) raw: c times the estimate
    total = variance.sum()
    kept_variance = torch.add(torch.dot(variance * scale, scale), correction, alpha=eps)
    kept = scale * (total / kept_variance).sqrt()
    # 1 where nothing is tracked; estimates that are NaN (edited, or loaded so) stay NaN, loud
    return kept.masked_fill_(total * count <= 0, 1.0)
