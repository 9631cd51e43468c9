"""Cor-Reg: penalise correlated dimensions of the batch's pooled embeddings.

H. Zhang, H. Liang, Y. Zhang, L.-M. Zhan, X.-M. Wu, X. Lu, A. Lam, "Fine-tuning Pre-trained
Language Models for Few-shot Intent Detection: Supervised Pre-training and Isotropization",
NAACL 2022. Their weight: 0.04 for BERT, 0.06 for RoBERTa.

    loss = weight * || Corr(X_b) - I ||_F                                 # scalar

with Corr the Pearson correlation matrix of the batch X_b (B, D) over its live dimensions.

The penalty has a floor when B <= D: Corr has rank <= B - 1 and a unit diagonal, so
||Corr - I||_F >= sqrt(D^2 / (B - 1) - D), 97 at D = 384 and B = 16 (0.04 x 97 = 3.9, against
a cross-entropy near 0.7). Small batches make the term mostly sampling noise; scale `weight`
to the batch and the dimension.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from isobn.functional import statistics_dtype
from isobn.isotropy import DEAD_RTOL
from isobn.running import check_num_features


class _CorrelationPenalty(torch.autograd.Function):
    """p = ||offdiag(z^T z)||_F with z_j = y_j / ||y_j|| (live columns, 0 for dead ones) and
    y = x - mean(x), for x (B, D); a backward written out in five passes over (B, D).

    With M = offdiag(z^T z) (symmetric) and g_j the columns of dp/dz = 2 z M / p,
        dp/dy_j = (g_j - z_j (z_j . g_j)) / ||y_j||     (the normalisation's projection)
    and 0 for dead columns. dp/dx = dp/dy: centring's backward subtracts column means, and
    these are 0 already (every column of z, hence of z M, has zero mean). At p = 0, M = 0 and
    the gradient is 0. Autograd's backward of the same forward ran 29 aten ops at (16, 384)
    (the mm pair, the norms' masks and broadcasts); this one runs 10, with no host read.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        y = x - x.mean(0)  # (B, D)
        norm = torch.linalg.vector_norm(y, dim=0)  # (D,) sqrt(B) s
        dead = norm <= DEAD_RTOL * norm.max()  # (D,) s_i <= rtol max s
        inverse = dead.logical_not() / (norm + dead)  # (D,) 1 / ||y_j||, 0 on dead columns
        z = y * inverse  # (B, D): unit live columns, zero dead ones
        eye = torch.eye(x.shape[1], dtype=torch.bool, device=x.device)
        off = (z.T @ z).masked_fill(eye, 0.0)  # (D, D) Corr - I
        penalty = torch.linalg.vector_norm(off)
        ctx.save_for_backward(z, inverse, off, penalty)
        return penalty

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        z, inverse, off, penalty = ctx.saved_tensors
        # at p = 0, off = 0: any finite factor gives the zero gradient
        factor = 2.0 * grad / penalty.clamp_min(torch.finfo(penalty.dtype).tiny)
        g = z @ off * factor  # (B, D) dp/dz
        return (g - z * (z * g).sum(0)) * inverse  # (B, D) dp/dx


def correlation_penalty(x: Tensor) -> Tensor:
    """|| Corr(x) - I ||_F of the rows of x (B, D), differentiable; a float64 scalar.

    Corr_ij = C_ij / (s_i s_j) with C the batch covariance and s_i = sqrt(C_ii) (the B vs B - 1
    normalisation cancels): with y = x - mean(x) and z_j = y_j / ||y_j||, Corr = z^T z. Dead
    dimensions, s_i <= DEAD_RTOL * max_j s_j (as in [`isobn.isotropy`][isobn.isotropy]; a
    zero-variance column has s_i = 0 exactly), get z_j = 0: their rows and columns of Corr are 0, so
    they neither count nor receive gradient. The diagonal is 0 by definition of Corr - I. 0 for B <
    2, for fewer than two live dimensions, or when every correlation is 0, with a zero gradient.
    Computed in float64 (float32 on MPS) with autocast off, on this process's rows only, with no
    host synchronisation; the backward is written out (see _CorrelationPenalty).
    """
    assert x.dim() == 2, f"expected (B, D), got {tuple(x.shape)}"
    dtype = statistics_dtype(x.device)
    if x.shape[0] < 2:
        return torch.zeros((), dtype=dtype, device=x.device)
    with torch.autocast(device_type=x.device.type, enabled=False):
        return _CorrelationPenalty.apply(x.to(dtype))


class CorReg(nn.Module):
    """Cor-Reg loss term: ``forward(pooled (B, D)) -> weight * || Corr(X_b) - I ||_F``.

    See [`correlation_penalty`][isobn.methods.correg.correlation_penalty] for the correlation, the
    dead-dimension rule and the edge cases (a batch of one gives 0). The returned scalar is already
    weighted: the trainer adds it to the task loss. float32 unless the input is float64. No state,
    no buffers.

    Args:
        num_features: D, the size of the pooled embedding (checked in forward).
        weight: lambda >= 0 (0.04 for BERT in the paper; 0.06 for RoBERTa).
    """

    def __init__(self, num_features: int, weight: float = 0.04) -> None:
        super().__init__()
        check_num_features(num_features)
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"weight must be a finite number >= 0, got {weight}")
        self.num_features = num_features
        self.weight = weight

    def forward(self, pooled: Tensor) -> Tensor:
        if pooled.dim() != 2 or pooled.shape[1] != self.num_features:
            raise ValueError(f"expected (B, {self.num_features}), got {tuple(pooled.shape)}")
        out_dtype = torch.float64 if pooled.dtype == torch.float64 else torch.float32
        return (self.weight * correlation_penalty(pooled)).to(out_dtype)

    def extra_repr(self) -> str:
        return f"{self.num_features}, weight={self.weight}"
