"""A prototype of IsoBN's arithmetic with fewer (D, D) temporaries, written to measure a
proposal for isobn.functional / isobn.layer without editing them; src adopted the approach in
commit 8a9a662 (lerp_ updates, a four-pass correlation), so the layer benchmark's "proto"
column now measures what is left between the two. Same formulas, same dtypes:

* update: batch covariance y^T y / n from float64-centred rows, then each running estimate
  moves by lerp_ (est + m (batch - est)) in place: one float32 copy of the (D, D) batch
  covariance instead of a copy, a difference, a product and an add.
* scale: corr_ij = cov_ij / (s_i s_j) as cov * (1/s)_i * (1/s)_j (0 where s = 0) built in
  one buffer and clamped, diagonal set, squared in place; the bias correction c divides the
  (D,) vectors and folds into that product (corr of cov/c and s/c is c corr of cov and s)
  instead of copying cov / c. A dimension is dead (its pairs count 0) below the same relative
  threshold as isobn.functional.DEAD_RTOL.

Only the default path is rewritten (single process, bias correction, momentum set,
correlation used, beta > 0); anything else defers to the shipped methods.
"""

from __future__ import annotations

import torch
from torch import Tensor

from isobn import IsoBN
from isobn.functional import DEAD_RTOL, statistics_dtype


class PrototypeIsoBN(IsoBN):
    def _default_path(self) -> bool:
        return (
            self.process_group is None
            and not (torch.distributed.is_available() and torch.distributed.is_initialized())
            and self.bias_correction
            and self.momentum is not None
            and self.use_correlation
            and self.beta > 0
        )

    @torch.no_grad()
    def update_running_stats(self, x: Tensor) -> None:
        if not self._default_path() or x.shape[0] < 2:
            return super().update_running_stats(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.detach().to(statistics_dtype(x.device))  # (N, D)
            y = x - x.mean(0)  # (N, D)
            cov = (y.T @ y).div_(x.shape[0])  # (D, D)
        std = cov.diagonal().clamp_min(0).sqrt()  # (D,)
        self.num_batches_tracked.add_(1)
        self.running_std.lerp_(std.to(self.running_std.dtype), self.momentum)
        self.running_cov.lerp_(cov.to(self.running_cov.dtype), self.momentum)

    def scale(self) -> Tensor:
        t = int(self.num_batches_tracked.item())
        if t == 0 or not self._default_path():
            return super().scale()
        c = 1.0 - (1.0 - self.momentum) ** t  # bias correction
        cov = self.running_cov  # (D, D), raw EMA
        std = self.running_std / c  # (D,)
        variance = cov.diagonal() / c  # (D,)
        total = variance.sum()
        if total <= 0:
            return torch.ones_like(std)
        alive = std > DEAD_RTOL * std.max()  # (D,)
        inv = torch.where(alive, std.reciprocal(), 0.0)  # (D,)
        corr = cov * inv.unsqueeze(1)  # (D, D)
        corr.mul_(inv.unsqueeze(0) / c).clamp_(-1.0, 1.0).fill_diagonal_(1.0)
        gamma = corr.square_().mean(1)  # (D,)
        scale = (gamma * std + self.eps).pow(-self.beta)  # (D,)
        return scale * (total / ((variance * scale.square()).sum() + self.eps)).sqrt()


def max_relative_difference(dim: int, steps: int = 5, seed: int = 0) -> float:
    """Largest relative difference between the scales of IsoBN and the prototype after the
    same `steps` correlated batches (B = 32)."""
    generator = torch.Generator().manual_seed(seed)
    shipped, prototype = IsoBN(dim).train(), PrototypeIsoBN(dim).train()
    mixing = torch.randn(dim, dim, generator=generator) / dim**0.5  # (D, D)
    for _ in range(steps):
        x = torch.randn(32, dim, generator=generator) @ mixing  # (B, D), correlated features
        shipped(x), prototype(x)
    a, b = shipped.scale(), prototype.scale()
    return float(((a - b).abs() / a.abs()).max())
