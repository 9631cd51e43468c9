"""The IsoBN module: running estimates as buffers, bias correction, sync across processes."""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from isobn.functional import batch_statistics, isobn_scale
from isobn.running import (
    RunningEstimates,
    check_eps,
    check_momentum,
    check_num_features,
    check_statistics_dtype,
    counter,
)


class IsoBN(RunningEstimates):
    r"""Isotropic Batch Normalization (Zhou, Lin, Ren, AAAI 2021).

    Rescales each feature of x by a detached per-dimension factor that shrinks dimensions with a
    large std that are strongly correlated with others; no mean subtraction, no affine
    parameters. See [`isobn.functional`][isobn.functional] for the formula.

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
        if not (beta >= 0 and math.isfinite(beta)):  # NaN fails `beta >= 0`
            raise ValueError(f"beta must be a finite number >= 0, got {beta}")
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
        # batches with statistics seen in training / that were finite, counted on the
        # device (a Python counter would change the module on every step: torch.compile would
        # recompile each time); read once when training stops
        self.register_buffer("_finite_batches", counter(device), persistent=False)
        self.register_buffer("_offered_batches", counter(device), persistent=False)

    # not saved state: the scale cache (see `scale`) and the warn-once flag of `update_...`
    _cached_scale: tuple | None = None
    _warned_non_finite = False

    def __setstate__(self, state) -> None:
        # modules pickled before the skip counter existed
        super().__setstate__(state)
        for name in ("_finite_batches", "_offered_batches"):
            if name not in self._buffers:
                self.register_buffer(name, counter(self.running_std.device), persistent=False)

    @torch.no_grad()
    def update_running_stats(self, x: Tensor) -> None:
        """Fold the statistics of a batch x (N, D) (all ranks) into the running estimates.

        A batch whose statistics are not finite (NaN or inf in x) is skipped on the device:
        it is folded in with weight 0 (its NaN and inf made finite first, so that
        est + 0 (batch - est) = est exactly), t is not counted, and a counter records it.
        Skipping, rather than raising, keeps the step free of host reads (raising would
        need one per step to look at the flag); the counter is read, and a warning given once,
        when the layer next leaves training mode (``.eval()``).
        """
        n, std, cov = batch_statistics(x, self.process_group)
        if not self._has_statistics(n):  # one row: no statistics (warns once)
            return
        finite = std.max() < float("inf")  # False for NaN or inf in x: its std is NaN
        dtype = self.running_std.dtype
        self.num_batches_tracked.add_(finite)
        self._finite_batches.add_(finite)
        self._offered_batches.add_(1)
        # w, or 0 for a skipped batch (a 0-dim torch.where over (D, D) is slow on CPUs);
        # bool * float is exact where the float's dtype is the statistics' own
        w = self._update_weight(dtype)
        exact = torch.is_tensor(w) or dtype == torch.get_default_dtype()
        weight = finite * w if exact else finite.to(dtype) * w
        self.running_std.lerp_(std.to(dtype).nan_to_num_(), weight)  # est + w (batch - est)
        self.running_cov.lerp_(cov.to(dtype).nan_to_num_(), weight)

    def estimates(self) -> tuple[Tensor, Tensor]:
        """The (std (D,), cov (D, D)) the scale uses: bias-corrected unless disabled."""
        c = self._safe_correction(self.running_std.dtype)
        return self.running_std / c, self.running_cov / c

    def scale(self) -> Tensor:
        """Current per-dimension scale (D,), float32/64; ones before any statistics exist.
        Computed on the device without host synchronisation, and cached until the running
        estimates or the hyperparameters change (see [`forward`][isobn.layer.IsoBN.forward])."""
        if torch.compiler.is_compiling():
            return self._compute_scale()  # the compiled graph fuses it; no Python-side cache
        key = self._scale_key()
        cached = self._cached_scale
        if cached is not None and _same_key(cached[0], key):
            scale = cached[1]
            if not scale.is_inference() or torch.is_inference_mode_enabled():
                return scale
        scale = self._compute_scale()
        self._cached_scale = (key, scale)
        return scale

    def forward(self, x: Tensor) -> Tensor:
        """x * scale (same shape and dtype as x).

        Training: fold x's statistics into the running estimates, then use the scale of the
        updated estimates. Eval: the scale is cached; the cache is dropped when the estimates
        can have changed: a training step, ``load_state_dict``, ``reset_running_stats``,
        ``.to()``/``.half()``/``.cuda()``, in-place edits of the buffers (their version
        counters move) or assigning new buffers or hyperparameters. Edits through ``.data``
        bypass version counters: call ``reset_running_stats`` or ``load_state_dict`` instead.
        """
        self._check_input(x)
        if self.training:
            self.update_running_stats(x if x.dim() == 2 else x.reshape(-1, self.num_features))
        scale = self.scale()  # (D,), no gradient
        if x.dtype in (torch.float16, torch.bfloat16):
            # a dimension with a tiny std can have a scale beyond the fp16 range (inf, then
            # 0 * inf = nan) while its product with x is small: multiply in float32
            return (x.float() * scale.float()).to(x.dtype)
        return x * scale.to(x.dtype)

    def train(self, mode: bool = True):
        if self.training and not mode:
            self._warn_if_batches_were_skipped()
        return super().train(mode)

    def reset_running_stats(self) -> None:
        super().reset_running_stats()
        self._finite_batches.zero_()
        self._offered_batches.zero_()
        self._cached_scale = None

    def _apply(self, fn, recurse=True):
        self._cached_scale = None
        return super()._apply(fn, recurse)

    @torch.no_grad()
    def _compute_scale(self) -> Tensor:
        dtype = self.running_std.dtype
        return isobn_scale(
            self.running_std,
            self.running_cov,
            self.beta,
            self.eps,
            self.use_correlation,
            self._correction(dtype),  # c = 0 at t = 0: the scale is 1 there
            self.num_batches_tracked,
        )

    def _scale_key(self) -> tuple:
        """What the scale depends on: each buffer (the tensor itself and its version counter,
        which every in-place change moves) and the hyperparameters. Python attributes only: no
        device access."""
        buffers = (self.running_std, self.running_cov, self.num_batches_tracked)
        hyper = (self.beta, self.eps, self.use_correlation, self.momentum, self.bias_correction)
        return tuple((b, b._version) for b in buffers), hyper

    def _warn_if_batches_were_skipped(self) -> None:
        if self._warned_non_finite or self._offered_batches.is_meta:
            return
        # one host read, when training stops (an evaluation reads the device anyway)
        finite, offered = torch.stack([self._finite_batches, self._offered_batches]).tolist()
        skipped = offered - finite
        if skipped > 0:
            warnings.warn(
                f"IsoBN skipped the statistics of {skipped} of {offered} training "
                "batches that held NaN or inf; its running estimates are those of the others",
                stacklevel=3,
            )
            self._warned_non_finite = True

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
        elif prefix + "num_batches_tracked" not in state_dict:
            # statistics without their count: t = 0 would make the layer the identity. Treat
            # them as tracked like the released format (bias correction 1), if there are any.
            stats = [state_dict.get(prefix + k) for k in ("running_std", "running_cov")]
            stats = [s for s in stats if isinstance(s, Tensor)]
            if stats:
                tracked = any(s.is_meta or bool(s.ne(0).any()) for s in stats)
                state_dict[prefix + "num_batches_tracked"] = torch.tensor(10**6 if tracked else 0)
        self._cached_scale = None
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


def _same_key(a: tuple, b: tuple) -> bool:
    """Keys of `IsoBN._scale_key`: the same tensors (by identity), versions and settings."""
    (buffers_a, hyper_a), (buffers_b, hyper_b) = a, b
    same_buffers = all(x is y and vx == vy for (x, vx), (y, vy) in zip(buffers_a, buffers_b))
    return same_buffers and hyper_a == hyper_b
