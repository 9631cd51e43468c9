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


def correlation_penalty(x: Tensor) -> Tensor:
    """|| Corr(x) - I ||_F of the rows of x (B, D), differentiable; a float64 scalar.

    Corr_ij = C_ij / (s_i s_j) with C the batch covariance and s_i = sqrt(C_ii) (the B vs
    B - 1 normalisation cancels). Dead dimensions, s_i <= DEAD_RTOL * max_j s_j (as in
    :mod:`isobn.isotropy`; a zero-variance column has s_i = 0 exactly), are excluded: their
    rows and columns of Corr are dropped, so they neither count nor receive gradient. The
    diagonal is 0 by definition of Corr - I. 0 for B < 2, for fewer than two live dimensions,
    or when every correlation is 0; the norm's gradient at 0 is taken as 0.
    Computed in float64 (float32 on MPS) with autocast off, on this process's rows only.
    """
    assert x.dim() == 2, f"expected (B, D), got {tuple(x.shape)}"
    dtype = statistics_dtype(x.device)
    zero = torch.zeros((), dtype=dtype, device=x.device)
    if x.shape[0] < 2:
        return zero
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.to(dtype)
        y = x - x.mean(0)  # (B, D)
        variance = y.detach().square().mean(0)  # (D,)
        std = variance.sqrt()
        alive = std > DEAD_RTOL * std.max()  # (D,)
        if int(alive.sum()) < 2:  # one host sync per step; B x D is small
            return zero
        y = y[:, alive]  # (B, A)
        # unit-variance columns: z^T z / B is the correlation matrix; the std is part of the
        # graph (a correlation does not change when a column is rescaled)
        z = y / y.square().mean(0).sqrt()  # (B, A)
        corr = z.T @ z / z.shape[0]  # (A, A)
        off = corr - torch.diag_embed(corr.diagonal())  # zero the diagonal exactly
        squared = off.square().sum()
        positive = squared > 0
        return torch.where(positive, torch.where(positive, squared, 1.0).sqrt(), zero)


class CorReg(nn.Module):
    """Cor-Reg loss term: ``forward(pooled (B, D)) -> weight * || Corr(X_b) - I ||_F``.

    See :func:`correlation_penalty` for the correlation, the dead-dimension rule and the edge
    cases (a batch of one gives 0). The returned scalar is already weighted: the trainer adds
    it to the task loss. float32 unless the input is float64. No state, no buffers.

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
