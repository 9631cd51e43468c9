"""The IsoBN module: running estimates as buffers, bias correction, sync across processes."""

from __future__ import annotations

import torch
from torch import Tensor

from isobn.functional import batch_statistics, isobn_scale
from isobn.running import (
    RunningEstimates,
    check_eps,
    check_momentum,
    check_num_features,
    check_statistics_dtype,
)


class IsoBN(RunningEstimates):
    r"""Isotropic Batch Normalization (Zhou, Lin, Ren, AAAI 2021).

    Rescales each feature of x by a detached per-dimension factor that shrinks dimensions with a
    large std that are strongly correlated with others; no mean subtraction, no affine
    parameters. See :mod:`isobn.functional` for the formula.

    Args:
        num_features: D, the size of the last dimension of the input.
        momentum: m of the running estimates, est <- est + m (batch - est). ``None`` gives a
            cumulative average over all batches seen (as in ``nn.BatchNorm1d``).
        beta: exponent of the scale; 0 makes the layer the identity.
        eps: added to gamma * std before the power, and to the variance-preserving denominator.
        bias_correction: use EMA / (1 - (1 - m)^t) (t = batches tracked), an unbiased weighted
            average from the first step. ``False`` reproduces the released arithmetic, whose
            estimates start at zero (kept for ablations).
        use_correlation: ``False`` sets gamma = 1 (std-only ablation).
        process_group: group whose ranks share statistics while training; all ranks when None.

    Shape:
        input (B, D) or (B, ..., D), statistics over all leading dimensions; output the same
        shape and dtype. Running statistics stay float32 (or float64) whatever the module dtype.

    Buffers:
        running_std (D,), running_cov (D, D): raw exponential moving averages, zero at start.
        num_batches_tracked: long scalar, t. Before the first update the layer is the identity.
    """

    _version = 1

    def __init__(
        self,
        num_features: int,
        momentum: float | None = 0.05,
        beta: float = 0.5,
        eps: float = 1e-3,
        bias_correction: bool = True,
        use_correlation: bool = True,
        process_group=None,
        device=None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        check_num_features(num_features)
        check_momentum(momentum)
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        check_eps(eps)
        check_statistics_dtype(dtype)
        factory = {"device": device, "dtype": dtype}
        statistics = {
            "running_std": torch.zeros(num_features, **factory),
            "running_cov": torch.zeros(num_features, num_features, **factory),
        }
        super().__init__(
            num_features, momentum, eps, bias_correction, process_group, statistics, device
        )
        self.beta = beta
        self.use_correlation = use_correlation

    @torch.no_grad()
    def update_running_stats(self, x: Tensor) -> None:
        """Fold the statistics of a batch x (N, D) (all ranks) into the running estimates."""
        n, std, cov = batch_statistics(x, self.process_group)
        if not self._count_batch(n):  # one row: no statistics (warns once)
            return
        dtype = self.running_std.dtype
        weight = self._update_weight(dtype)
        self.running_std.lerp_(std.to(dtype), weight)  # est + w (batch - est)
        self.running_cov.lerp_(cov.to(dtype), weight)

    def estimates(self) -> tuple[Tensor, Tensor]:
        """The (std (D,), cov (D, D)) the scale uses: bias-corrected unless disabled."""
        c = self._safe_correction(self.running_std.dtype)
        return self.running_std / c, self.running_cov / c

    def scale(self) -> Tensor:
        """Current per-dimension scale (D,), float32/64; ones before any statistics exist.
        Computed on the device without host synchronisation."""
        scale = isobn_scale(
            self.running_std,
            self.running_cov,
            self.beta,
            self.eps,
            self.use_correlation,
            self._correction(self.running_std.dtype),  # c = 0 at t = 0: masked below
        )
        return torch.where(self.num_batches_tracked > 0, scale, torch.ones_like(scale))

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        if self.training:
            self.update_running_stats(x.reshape(-1, self.num_features))
        scale = self.scale().detach()  # (D,)
        if x.dtype in (torch.float16, torch.bfloat16):
            # a dimension with a tiny std can have a scale beyond the fp16 range (inf, then
            # 0 * inf = nan) while its product with x is small: multiply in float32
            return (x.float() * scale.float()).to(x.dtype)
        return x * scale.to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, momentum={self.momentum}, beta={self.beta}, eps={self.eps}, "
            f"bias_correction={self.bias_correction}, use_correlation={self.use_correlation}"
        )

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        version = local_metadata.get("version", None)
        if version is None and prefix + "cov" in state_dict:
            # The released code stored raw EMAs as `cov` and `std` and had no counter. A large t
            # makes the bias correction 1, so the migrated layer computes exactly what it did.
            state_dict[prefix + "running_cov"] = state_dict.pop(prefix + "cov")
            state_dict[prefix + "running_std"] = state_dict.pop(prefix + "std")
            state_dict.setdefault(prefix + "num_batches_tracked", torch.tensor(10**6))
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
