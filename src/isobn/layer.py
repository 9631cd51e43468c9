"""The IsoBN module: running estimates as buffers, bias correction, sync across processes."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from isobn.functional import batch_statistics, isobn_scale

_STAT_BUFFERS = ("running_std", "running_cov")


class IsoBN(nn.Module):
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
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        if momentum is not None and not 0 < momentum <= 1:
            raise ValueError(f"momentum must be in (0, 1] or None, got {momentum}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"statistics dtype must be float32 or float64, got {dtype}")
        self.num_features = num_features
        self.momentum = momentum
        self.beta = beta
        self.eps = eps
        self.bias_correction = bias_correction
        self.use_correlation = use_correlation
        self.process_group = process_group
        self._warned_batch_of_one = False
        self.register_buffer("running_std", torch.zeros(num_features, device=device, dtype=dtype))
        self.register_buffer(
            "running_cov", torch.zeros(num_features, num_features, device=device, dtype=dtype)
        )
        self.register_buffer(
            "num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device)
        )

    def reset_running_stats(self) -> None:
        """Forget all statistics: the layer is the identity again until the next update."""
        self.running_std.zero_()
        self.running_cov.zero_()
        self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """IsoBN has no parameters; kept for parity with ``nn.BatchNorm``."""
        self.reset_running_stats()

    @torch.no_grad()
    def update_running_stats(self, x: Tensor) -> None:
        """Fold the statistics of a batch x (N, D) (all ranks) into the running estimates."""
        n, std, cov = batch_statistics(x, self.process_group)
        if n < 2:
            if not self._warned_batch_of_one:
                warnings.warn(
                    "IsoBN got a training batch of one row: its statistics are left unchanged",
                    stacklevel=3,
                )
                self._warned_batch_of_one = True
            return
        self.num_batches_tracked.add_(1)
        dtype = self.running_std.dtype
        if self.momentum is None:  # cumulative average: weight 1 / t
            weight = self.num_batches_tracked.reciprocal().to(dtype)
        else:
            weight = self.momentum
        self.running_std.lerp_(std.to(dtype), weight)  # est + w (batch - est)
        self.running_cov.lerp_(cov.to(dtype), weight)

    def _correction(self) -> Tensor | float:
        """Bias correction c = 1 - (1 - m)^t of the zero-initialised EMAs (1 when off)."""
        if not self.bias_correction or self.momentum is None:
            return 1.0
        t = self.num_batches_tracked.to(self.running_std.dtype)
        return 1.0 - (1.0 - self.momentum) ** t

    def estimates(self) -> tuple[Tensor, Tensor]:
        """The (std (D,), cov (D, D)) the scale uses: bias-corrected unless disabled."""
        c = self._correction()
        if isinstance(c, Tensor):
            c = torch.where(c > 0, c, 1.0)  # t = 0: the (zero) estimates as they are
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
            self._correction(),
        )
        return torch.where(self.num_batches_tracked > 0, scale, torch.ones_like(scale))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.num_features:
            raise ValueError(f"expected last dimension {self.num_features}, got {tuple(x.shape)}")
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

    def _apply(self, fn, recurse=True):
        # Like BatchNorm in mixed precision, statistics must not be rounded to half precision:
        # follow the device of `fn` (e.g. .cuda(), .to(device)) but keep the float32/64 dtype.
        kept = {name: getattr(self, name) for name in _STAT_BUFFERS}
        super()._apply(fn, recurse)
        for name, before in kept.items():
            after = self._buffers[name]
            if after is not None and after.dtype not in (torch.float32, torch.float64):
                self._buffers[name] = before.to(device=after.device)
        return self

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
