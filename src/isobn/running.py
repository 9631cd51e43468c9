"""Running estimates of batch statistics, shared by IsoBN and ZCA whitening.

Modelled on PyTorch's ``_NormBase``. Each estimate is a raw exponential moving average that
starts at zero, divided by the bias correction when read:

    est <- est + w (batch - est),   w = m, or 1 / t when momentum is None (cumulative average)
    c   = 1 - (1 - m)^t             (1 without bias correction or for a cumulative average)

with t = ``num_batches_tracked`` (a long buffer) counting the batches folded in. The math is in the
pure functions; [`RunningEstimates`][isobn.running.RunningEstimates] holds the buffers: float32/64
statistics that follow the module's device but never a half-precision dtype. The argument checks and
the count buffer serve the other method modules too (I-STAR's reference).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn


def check_num_features(num_features: int) -> None:
    if num_features < 1:
        raise ValueError(f"num_features must be >= 1, got {num_features}")


def check_momentum(momentum: float | None) -> None:
    if momentum is not None and not 0 < momentum <= 1:  # NaN and inf fail too
        raise ValueError(f"momentum must be in (0, 1] or None, got {momentum}")


def check_eps(eps: float) -> None:
    if not (eps > 0 and math.isfinite(eps)):  # NaN fails `eps > 0`
        raise ValueError(f"eps must be a finite number > 0, got {eps}")


def check_statistics_dtype(dtype: torch.dtype, what: str = "statistics") -> None:
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{what} dtype must be float32 or float64, got {dtype}")


def counter(device=None) -> Tensor:
    """A count buffer: a long scalar 0 (long, like ``num_batches_tracked``, so it never rounds)."""
    return torch.tensor(0, dtype=torch.long, device=device)


def update_weight(momentum: float | None, t: Tensor, dtype: torch.dtype) -> Tensor | float:
    """w of est <- est + w (batch - est) for batch t >= 1: m, or 1 / t in `dtype` when m is None
    (1 at t = 0, when the first batch was skipped: finite, so that 0 * w is 0)."""
    return t.clamp_min(1).reciprocal().to(dtype) if momentum is None else momentum


def bias_correction(momentum: float, t: Tensor, dtype: torch.dtype) -> Tensor:
    """c = 1 - (1 - m)^t in `dtype`: the total weight the zero-initialised average has given
    to batches after t updates (0 at t = 0)."""
    decay = (1.0 - momentum) ** t  # default float dtype: computed as before, in one op
    return 1.0 - (decay if decay.dtype == dtype else (1.0 - momentum) ** t.to(dtype))


class KeepsStatisticsDtype(nn.Module):
    """A module whose float buffers are statistics: ``.half()``, ``.to(torch.bfloat16)`` and
    the like move them to the new device but keep their float32/64 dtype."""

    def _statistics(self) -> dict[str, Tensor]:
        return {k: v for k, v in self._buffers.items() if v is not None and v.is_floating_point()}

    def _apply(self, fn, recurse=True):
        # Like BatchNorm in mixed precision, statistics must not be rounded to half precision:
        # follow the device of `fn` (e.g. .cuda(), .to(device)) but keep the float32/64 dtype.
        kept = self._statistics()
        super()._apply(fn, recurse)
        for name, before in kept.items():
            after = self._buffers[name]
            if after is not None and after.dtype not in (torch.float32, torch.float64):
                self._buffers[name] = before.to(device=after.device)
        return self


class RunningEstimates(KeepsStatisticsDtype):
    """Base of the modules that keep running estimates (IsoBN, Whitening), like ``_NormBase``.

    Subclasses check their arguments (with the ``check_*`` functions, in their own order), then
    call this ``__init__``, which stores the shared hyperparameters and registers `statistics`
    (float buffers, in order) and then ``num_batches_tracked``. Every float buffer is a
    statistic: ``.half()`` and the like move it but keep its float32/64 dtype.
    """

    def __init__(
        self,
        num_features: int,
        momentum: float | None,
        eps: float,
        bias_correction: bool,
        process_group,
        statistics: dict[str, Tensor],
        device=None,
    ) -> None:
        super().__init__()
        self.num_features = num_features
        self.momentum = momentum
        self.eps = eps
        self.bias_correction = bias_correction
        self.process_group = process_group
        self._warned_batch_of_one = False
        for name, value in statistics.items():
            self.register_buffer(name, value)
        self.register_buffer("num_batches_tracked", counter(device))

    def reset_running_stats(self) -> None:
        """Forget all statistics (zero estimates, t = 0): the module is the identity again."""
        for value in self._statistics().values():
            value.zero_()
        self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """No parameters; kept for parity with ``nn.BatchNorm``: resets the statistics."""
        self.reset_running_stats()

    def _check_input(self, x: Tensor) -> None:
        """Refuse what cannot be normalised: non-floating input (its scale would be cast to
        integers), a wrong last dimension, or input on another device than the statistics
        (a module on `meta` takes `meta` input: shapes only)."""
        name = type(self).__name__
        if not x.is_floating_point():
            raise TypeError(f"{name} needs floating-point input, got {x.dtype}; convert it first")
        if x.shape[-1] != self.num_features:
            raise ValueError(f"expected last dimension {self.num_features}, got {tuple(x.shape)}")
        device = self.num_batches_tracked.device
        if x.device != device:
            raise ValueError(
                f"{name}'s statistics are on {device} but the input is on {x.device}; move the "
                f"module with .to({str(x.device)!r}) (or the input to {str(device)!r})"
            )

    def _count_batch(self, n: int) -> bool:
        """t += 1 for a batch of n >= 2 rows (True); a batch of one row has no statistics: it
        is not counted (False) and warns once."""
        if not self._has_statistics(n, stacklevel=5):
            return False
        self.num_batches_tracked.add_(1)
        return True

    def _has_statistics(self, n: int, stacklevel: int = 4) -> bool:
        """Whether a batch of n rows has statistics (n >= 2); a batch of one row warns once
        (`stacklevel` 4 names the caller of the module from its update_running_stats)."""
        if n >= 2:
            return True
        if not self._warned_batch_of_one:
            warnings.warn(
                f"{type(self).__name__} got a training batch of one row: its statistics are "
                "left unchanged",
                stacklevel=stacklevel,
            )
            self._warned_batch_of_one = True
        return False

    def _update_weight(self, dtype: torch.dtype) -> Tensor | float:
        """w of this update (t already counted): m, or 1 / t for a cumulative average."""
        return update_weight(self.momentum, self.num_batches_tracked, dtype)

    def _correction(self, dtype: torch.dtype) -> Tensor | float:
        """c = 1 - (1 - m)^t in `dtype` (0 at t = 0); 1 when off or for a cumulative average."""
        if not self.bias_correction or self.momentum is None:
            return 1.0
        return bias_correction(self.momentum, self.num_batches_tracked, dtype)

    def _safe_correction(self, dtype: torch.dtype) -> Tensor | float:
        """c where it is > 0, else 1 (t = 0, or underflow): the (zero) estimates as they are."""
        c = self._correction(dtype)
        return torch.where(c > 0, c, 1.0) if isinstance(c, Tensor) else c
