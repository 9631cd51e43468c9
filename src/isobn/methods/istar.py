"""I-STAR: a differentiable IsoScore* of the batch's pooled embeddings as a loss term.

W. Rudman, C. Eickhoff, "Stable Anisotropic Regularization", ICLR 2024.

    Sigma*    = (1 - zeta) Sigma_b + zeta C0                                     # (D, D)
    IsoScore* = (tr(Sigma*)^2 / ||Sigma*||_F^2 - 1) / (D - 1)  # IsoScore of Sigma*'s eigenvalues
    loss      = weight * (1 - IsoScore*)                                         # scalar

Sigma_b is the unbiased (divide by B - 1) covariance of the batch X_b (B, D) and C0 the unbiased
covariance of the pooled embeddings of a sample of the training set, as in the authors'
``IsoScore`` package (``torch.cov``); the shrinkage towards C0 keeps the estimate stable for
batches much smaller than D. weight < 0 rewards anisotropy (the authors' recommended
direction, e.g. -5 with zeta = 0.2); weight > 0 rewards isotropy.

The paper regularises the token embeddings of every layer; isobn applies it to the pooled
embedding that feeds the classifier, the same place IsoBN and the other methods act.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from isobn.functional import moments, statistics_dtype
from isobn.running import (
    KeepsStatisticsDtype,
    check_num_features,
    check_statistics_dtype,
    counter,
)


def isoscore_from_eigenvalues(eigenvalues: Tensor) -> Tensor:
    """IsoScore (Rudman et al. 2022) of covariance eigenvalues (D,), differentiable, no clipping.

    With n = D and lambda the absolute eigenvalues:
        lambda_hat = sqrt(n) lambda / ||lambda||_2
        delta      = ||lambda_hat - 1||_2 / sqrt(2 (n - sqrt(n)))      # isotropy defect, [0, 1]
        IsoScore   = ((n - delta^2 (n - sqrt(n)))^2 - n) / (n (n - 1))  # 1 isotropic, 0 one line
    Dead dimensions count in n, as in the reference. Zero total variance gives 0 (and no
    gradient); D = 1 gives 1. The eigenvalue route, kept as the definition that
    [`isoscore_from_covariance`][isobn.methods.istar.isoscore_from_covariance] is tested against.
    """
    n = eigenvalues.shape[0]
    if n == 1:
        return torch.ones((), dtype=eigenvalues.dtype, device=eigenvalues.device)
    lam = eigenvalues.abs()
    norm = torch.linalg.vector_norm(lam)
    positive = norm > 0
    lam_hat = math.sqrt(n) * lam / torch.where(positive, norm, 1.0)  # (D,)
    defect_sq = (lam_hat - 1.0).square().sum() / (2.0 * (n - math.sqrt(n)))
    score = ((n - defect_sq * (n - math.sqrt(n))).square() - n) / (n * (n - 1))
    return torch.where(positive, score, torch.zeros_like(score))


def participation_ratio(cov: Tensor) -> Tensor:
    """tr(cov)^2 / ||cov||_F^2 = (sum lambda)^2 / sum lambda^2 of a symmetric PSD matrix (k, k).

    In [1, rank]: 1 for one direction, k for an isotropic cov. Computed as
    (tr^2 + f) / (||cov||_F^2 + f) with f = sqrt(tiny) of the dtype (1.5e-154 in float64), so a
    zero matrix gives 1 with a zero gradient, the gradient is finite everywhere, and f changes
    nothing above round-off for any ||cov||_F^2 > 1e-138. A 0-dim tensor in cov's dtype.
    """
    floor = torch.finfo(cov.dtype).tiny ** 0.5
    flat = cov.reshape(-1)  # (k * k,)
    return (cov.diagonal().sum().square() + floor) / (torch.dot(flat, flat) + floor)


def isoscore_from_covariance(cov: Tensor) -> Tensor:
    """IsoScore of a symmetric PSD covariance (D, D) without its eigenvalues; a 0-dim tensor.

    IsoScore depends on the eigenvalues lambda >= 0 only through sum lambda = tr(cov) and
    ||lambda||_2 = ||cov||_F: with n = D, ||lambda_hat - 1||^2 = 2n - 2 sqrt(n) tr / ||cov||_F, so
        delta^2  = (n - sqrt(n) tr / ||cov||_F) / (n - sqrt(n))
        IsoScore = (tr^2 / ||cov||_F^2 - 1) / (n - 1)          # (participation ratio - 1) / (n - 1)
    equal to [`isoscore_from_eigenvalues`][isobn.methods.istar.isoscore_from_eigenvalues] (to
    round-off; exactly where no eigenvalue is negative) and differentiable through a trace and a
    Frobenius norm, so the gradient is stable where eigenvalues repeat. D = 1 gives 1; zero total
    variance gives 0.
    """
    n = cov.shape[-1]
    if n == 1:
        return torch.ones((), dtype=cov.dtype, device=cov.device)
    return (participation_ratio(cov) - 1.0) / (n - 1)


def shrunk_covariance(
    x: Tensor, reference_cov: Tensor | None = None, zeta: float | Tensor = 0.0
) -> Tensor:
    """Sigma* = (1 - zeta) y^T y / (B - 1) + zeta C0 (D, D) of the rows of x (B, D), B >= 2.

    y = x - mean(x); without a reference, Sigma* = y^T y / (B - 1). zeta may be a 0-dim tensor
    (no host synchronisation). float64 (float32 on MPS), autocast off.
    The mean is a constant to autograd: a function of y^T y has the gradient 2 y G (G
    symmetric), whose column means are 0 already, so centring's backward (the projection onto
    zero-mean columns) would leave it unchanged.
    """
    assert x.dim() == 2 and x.shape[0] >= 2, f"expected (B >= 2, D), got {tuple(x.shape)}"
    dtype = statistics_dtype(x.device)
    b = x.shape[0]
    with torch.autocast(device_type=x.device.type, enabled=False):
        y = x.to(dtype)
        with torch.no_grad():
            mean = y.mean(0)  # (D,)
        y = y - mean  # (B, D)
        if reference_cov is None:
            return y.T @ y / (b - 1)
        reference_cov = reference_cov.to(dtype)
        if isinstance(zeta, Tensor):
            return (1.0 - zeta) * (y.T @ y / (b - 1)) + zeta * reference_cov
        # one fused op: zeta C0 + (1 - zeta) / (B - 1) y^T y
        return torch.addmm(reference_cov, y.T, y, beta=zeta, alpha=(1.0 - zeta) / (b - 1))


def isoscore_star(
    x: Tensor, reference_cov: Tensor | None = None, zeta: float | Tensor = 0.0
) -> Tensor:
    """IsoScore* of the rows of x (B, D) shrunk towards reference_cov (D, D); float64 scalar.

    IsoScore ([`isoscore_from_covariance`][isobn.methods.istar.isoscore_from_covariance]: a trace
    and a Frobenius norm, no eigenvalues) of Sigma*
    ([`shrunk_covariance`][isobn.methods.istar.shrunk_covariance]). This process's rows only, as in
    the authors' DDP code. B < 2 has no covariance: 0 is returned (a constant).
    """
    assert x.dim() == 2, f"expected (B, D), got {tuple(x.shape)}"
    if x.shape[0] < 2:
        return torch.zeros((), dtype=statistics_dtype(x.device), device=x.device)
    return isoscore_from_covariance(shrunk_covariance(x, reference_cov, zeta))


class IStar(KeepsStatisticsDtype):
    """I-STAR loss term: ``forward(pooled (B, D)) -> weight * (1 - IsoScore*(X_b))``.

    See [`isoscore_star`][isobn.methods.istar.isoscore_star]. The returned scalar is already
    weighted: the trainer adds it to the task loss. float32 unless the input is float64.

    Args:
        num_features: D, the size of the pooled embedding.
        weight: lambda; < 0 decreases isotropy (the paper's recommendation, -5), > 0 increases it.
        zeta: shrinkage towards C0, in [0, 1] (the paper's example: 0.2).
        process_group: ranks whose rows `set_reference` pools; all ranks when None.
        device, dtype: of the C0 buffer (float32 or float64).

    Buffers:
        reference_cov (D, D): C0, the unbiased covariance of the rows given to `set_reference`;
            float32/64 whatever the module is cast to.
        reference_count: long scalar, how many rows C0 comes from; 0 before any reference,
            and then zeta is treated as 0 (IsoScore* of the batch covariance alone). C0 is 0
            whenever the count is 0 (set and cleared together).
    """

    def __init__(
        self,
        num_features: int,
        weight: float = -5.0,
        zeta: float = 0.2,
        process_group=None,
        device=None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        check_num_features(num_features)
        if not math.isfinite(weight):
            raise ValueError(f"weight must be a finite number, got {weight}")
        if not 0 <= zeta <= 1:
            raise ValueError(f"zeta must be in [0, 1], got {zeta}")
        check_statistics_dtype(dtype, "reference")
        self.num_features = num_features
        self.weight = weight
        self.zeta = zeta
        self.process_group = process_group
        self.register_buffer(
            "reference_cov", torch.zeros(num_features, num_features, device=device, dtype=dtype)
        )
        self.register_buffer("reference_count", counter(device))

    @property
    def has_reference(self) -> bool:
        return bool(self.reference_count > 0)

    @torch.no_grad()
    def set_reference(self, pooled: Tensor) -> None:
        """Set C0 to the unbiased covariance (divide by N - 1) of pooled (N, D), all ranks.

        The trainer calls this before each epoch with the pooled embeddings of a sample of the
        training set (the paper recomputes C0 every epoch).
        """
        if pooled.dim() != 2 or pooled.shape[1] != self.num_features:
            raise ValueError(f"expected (N, {self.num_features}), got {tuple(pooled.shape)}")
        n, _, scatter = moments(pooled, self.process_group)
        if n < 2:
            raise ValueError(f"set_reference needs at least 2 rows, got {n}")
        self.reference_cov.copy_(scatter / (n - 1))
        self.reference_count.fill_(n)

    def clear_reference(self) -> None:
        """Forget C0: zeta is treated as 0 again."""
        self.reference_cov.zero_()
        self.reference_count.zero_()

    def _zeta(self, device: torch.device) -> float | Tensor:
        """zeta for Sigma*, treated as 0 before any reference without a read of the count.

        C0 is 0 then, so Sigma* = (1 - zeta) Sigma_b, whose IsoScore is that of Sigma_b
        (IsoScore is scale-free). Only zeta = 1 needs the count, decided on the device.
        """
        if self.zeta == 1.0:
            return (self.reference_count > 0).to(statistics_dtype(device))
        return self.zeta

    def isoscore_star(self, pooled: Tensor) -> Tensor:
        """IsoScore* of pooled (B, D) with this module's C0 and zeta (float64 scalar)."""
        return isoscore_star(pooled, self.reference_cov, self._zeta(pooled.device))

    def forward(self, pooled: Tensor) -> Tensor:
        if pooled.dim() != 2 or pooled.shape[1] != self.num_features:
            raise ValueError(f"expected (B, {self.num_features}), got {tuple(pooled.shape)}")
        out_dtype = torch.float64 if pooled.dtype == torch.float64 else torch.float32
        n = self.num_features
        if pooled.shape[0] < 2 or n == 1:  # no covariance, or IsoScore* = 1: no loss
            return torch.zeros((), dtype=out_dtype, device=pooled.device)
        cov = shrunk_covariance(pooled, self.reference_cov, self._zeta(pooled.device))
        # weight (1 - IsoScore*) = weight (n - ratio) / (n - 1), as one multiply and one add
        ratio = participation_ratio(cov)
        loss = ratio * (-self.weight / (n - 1)) + self.weight * n / (n - 1)
        return loss.to(out_dtype)

    def extra_repr(self) -> str:
        return f"{self.num_features}, weight={self.weight}, zeta={self.zeta}"
