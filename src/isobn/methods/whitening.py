"""ZCA whitening of the pooled embedding (Decorrelated Batch Normalization, Huang et al. 2018).

L. Huang, D. Yang, B. Lang, J. Deng, "Decorrelated Batch Normalization", CVPR 2018.

    x_hat     = (x - mu) W,        W = (Sigma + eps I)^{-1/2}                            # (B, D)

mu (D,) and Sigma (D, D) are running estimates, kept exactly like IsoBN's: raw exponential
moving averages of the batch mean and the *population* (biased, divide by B) batch covariance,
est <- est + m (batch - est), divided by the bias correction c = 1 - (1 - m)^t. W is computed in
float64 by one of two solvers that agree to round-off once converged:

* ``eigh``: Sigma = U Lambda U^T, W = U (max(Lambda, 0) + eps)^{-1/2} U^T, exact ZCA; one
  eigendecomposition, which on a GPU is slow and synchronises with the host.
* ``newton``: coupled Newton-Schulz iterations (Higham 2008, as in IterNorm, Huang et al., CVPR
  2019), matrix products only, with no host synchronisation:
      A = (Sigma + eps I) / c,  c = ||Sigma + eps I||_F           # eigenvalues in (0, 1]
      Y_0 = A, Z_0 = I;  T_k = (3 I - Z_k Y_k) / 2,  Y_{k+1} = Y_k T_k,  Z_{k+1} = T_k Z_k
      W = Z_K / sqrt(c)                                            # Z_k -> A^{-1/2}
  An eigenvalue l of A needs about 13 + 3 log10(1e-3 / l) steps to reach 1e-8 relative; the
  smallest is eps / c, so the default 20 steps are exact for c / eps up to 3e5 (within 1e-4 up
  to 1e6). Beyond that they amplify the weakest directions less, as if eps were ~1e-7 c: a
  softer whitening, never a divergence (Z_k grows monotonically towards A^{-1/2}).
* ``auto`` (default): ``newton`` on an accelerator, ``eigh`` on the CPU, where one float64
  eigendecomposition is ~13x fewer flops than 20 Newton-Schulz steps (0.5 against 6.4 GFLOP at
  D = 384).

A dead dimension or a rank-deficient covariance (B <= D) gives 1 / sqrt(eps) in its null
space, never inf or nan. Unlike Huang et al., who whiten with the batch's own statistics while
training, the transform always comes from the running estimates (as IsoBN's scale does), so
training and evaluation apply the same kind of map and a batch of any size can be whitened.
"""

from __future__ import annotations

import torch
from torch import Tensor

from isobn.functional import moments, statistics_dtype
from isobn.running import (
    RunningEstimates,
    check_eps,
    check_momentum,
    check_num_features,
    check_statistics_dtype,
)


class _InverseSqrtPSD(torch.autograd.Function):
    """W = U (max(Lambda, 0) + eps)^{-1/2} U^T with a backward that is finite for ties.

    Autograd through ``torch.linalg.eigh`` divides by lambda_i - lambda_j and gives inf/nan
    when eigenvalues repeat (every rank-deficient covariance has repeated zeros). The
    derivative of a spectral function is U (L o (U^T G U)) U^T with the divided differences
    L_ij = (f(l_i) - f(l_j)) / (l_i - l_j); for f(l) = (l + eps)^{-1/2} and s = sqrt(l + eps)
    this is L_ij = -1 / (s_i s_j (s_i + s_j)), which needs no difference of eigenvalues and is
    f'(l_i) = -1 / (2 s_i^3) on ties.
    """

    @staticmethod
    def forward(ctx, cov: Tensor, eps: float) -> Tensor:
        eigenvalues, vectors = torch.linalg.eigh(cov)  # ascending, (D,), (D, D)
        s = (eigenvalues.clamp_min(0) + eps).sqrt()  # (D,)
        ctx.save_for_backward(vectors, s)
        return (vectors / s) @ vectors.T

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        vectors, s = ctx.saved_tensors
        grad = 0.5 * (grad + grad.T)  # the input is symmetric: only its symmetric part moves
        divided = -1.0 / (s[:, None] * s[None, :] * (s[:, None] + s[None, :]))  # (D, D)
        inner = vectors.T @ grad @ vectors
        return vectors @ (divided * inner) @ vectors.T, None


def inverse_sqrt(cov: Tensor, eps: float) -> Tensor:
    """Sigma^{-1/2} = U (max(Lambda, 0) + eps)^{-1/2} U^T of a symmetric PSD matrix (D, D).

    eps > 0 is added to the eigenvalues after negatives (round-off) are clipped to 0.
    Differentiable, with a gradient that stays finite for repeated eigenvalues.
    Computes in the dtype of `cov` (pass float64).
    """
    return _InverseSqrtPSD.apply(cov, eps)


def inverse_sqrt_newton(cov: Tensor, eps: float, iterations: int = 20) -> Tensor:
    """(Sigma + eps I)^{-1/2} of a symmetric PSD matrix (D, D) by coupled Newton-Schulz steps.

    See the module docstring for the iteration and its convergence. Matrix products only (3 per
    step, 3K - 2 in all), no host synchronisation, differentiable by autograd. Computes in the
    dtype of `cov` (pass float64).
    """
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)  # (D, D)
    shifted = torch.add(cov, eye, alpha=eps)
    norm = torch.linalg.matrix_norm(shifted)  # Frobenius: >= the largest eigenvalue
    y = shifted / norm  # Y_0 = A, eigenvalues in (0, 1]
    three_halves = 1.5 * eye
    t = torch.add(three_halves, y, alpha=-0.5)  # T_0 = (3 I - Z_0 Y_0) / 2 with Z_0 = I
    z = t  # Z_1 = T_0 Z_0
    for _ in range(1, iterations):  # step k = 1, ..., K - 1
        y = y @ t  # Y_k = Y_{k-1} T_{k-1}
        t = torch.addmm(three_halves, z, y, alpha=-0.5)  # T_k = (3 I - Z_k Y_k) / 2
        z = t @ z  # Z_{k+1} = T_k Z_k
    return z / norm.sqrt()


def whiten(x: Tensor, mean: Tensor, matrix: Tensor) -> Tensor:
    """x_hat = (x - mean) W for x (..., D), mean (D,), W (D, D) symmetric; x's shape and dtype.

    Computed in float32 at least (half-precision inputs are whitened in float32, then cast back,
    since W can reach 1 / sqrt(eps)).
    """
    dtype = torch.promote_types(x.dtype, torch.float32)
    with torch.autocast(device_type=x.device.type, enabled=False):
        out = (x.to(dtype) - mean.to(dtype)) @ matrix.to(dtype)
    return out.to(x.dtype)


SOLVERS = ("auto", "newton", "eigh")


class Whitening(RunningEstimates):
    r"""ZCA whitening with running estimates, the norm of Decorrelated BN (Huang et al. 2018).

    x_hat = (x - mu) Sigma^{-1/2}; see the module docstring for the estimates and the eps
    placement. No affine parameters.

    Args:
        num_features: D, the size of the last dimension of the input.
        momentum: m of the running estimates, est <- est + m (batch - est); ``None`` gives a
            cumulative average (weight 1 / t), as in IsoBN and ``nn.BatchNorm1d``.
        eps: added to the eigenvalues of Sigma before the inverse square root (absolute, in the
            units of the embedding's variance); bounds the gain of any direction by 1 / sqrt(eps).
        bias_correction: divide the zero-initialised averages by c = 1 - (1 - m)^t (as IsoBN).
        backprop: ``False`` (default) treats mu and W as constants, like IsoBN's detached scale,
            so the comparison isolates full decorrelation against IsoBN's per-dimension scale.
            ``True`` backpropagates through this step's estimates (the current batch's share
            m / c of them) and through the solver (the eigendecomposition's closed-form
            derivative, or autograd through the Newton-Schulz products). With
            ``update_every`` > 1 the gradient reaches W only on the steps that recompute it.
        update_every: recompute W every k training steps (steps 1, k + 1, 2k + 1, ...); in
            between, the cached W is used while mu still follows every batch. W costs O(D^3)
            (one eigendecomposition, or 3 x iterations matrix products). The step count is kept
            on the host too (read from the buffer once after construction, loading or a reset),
            so skipping steps reads nothing from the device.
        solver: ``"auto"`` (default: ``"newton"`` on an accelerator, ``"eigh"`` on the CPU),
            ``"newton"`` (Newton-Schulz, matrix products, no host synchronisation) or ``"eigh"``
            (exact ZCA by an eigendecomposition); see the module docstring.
        iterations: Newton-Schulz steps (20: exact while ||Sigma + eps I||_F / eps <= 3e5).
        process_group: group whose ranks share statistics while training; all ranks when None.
            With ``backprop`` the gradient flows through this rank's rows only (other ranks'
            sums act as constants); exact on one process.

    Shape:
        input (B, D) or (B, ..., D), statistics over all leading dimensions; output the same
        shape and dtype.

    Buffers:
        running_mean (D,), running_cov (D, D): raw moving averages, zero at start (float32, or
        float64 with ``dtype``, whatever the module dtype).
        whitening_matrix (D, D): the W in use, the identity before the first update.
        num_batches_tracked: long scalar, t.

    Before any statistics (t = 0) the module is the identity (mu = 0, W = I). Evaluation uses
    the running mean and the cached W only. A training batch of one row leaves the statistics
    unchanged (with a warning) and is whitened with the current estimates.
    """

    _version = 1

    def __init__(
        self,
        num_features: int,
        momentum: float | None = 0.05,
        eps: float = 1e-3,
        bias_correction: bool = True,
        backprop: bool = False,
        update_every: int = 1,
        solver: str = "auto",
        iterations: int = 20,
        process_group=None,
        device=None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        check_num_features(num_features)
        check_momentum(momentum)
        check_eps(eps)
        if isinstance(update_every, bool) or int(update_every) != update_every or update_every < 1:
            raise ValueError(f"update_every must be an integer >= 1, got {update_every}")
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
        if isinstance(iterations, bool) or int(iterations) != iterations or iterations < 1:
            raise ValueError(f"iterations must be an integer >= 1, got {iterations}")
        check_statistics_dtype(dtype)
        factory = {"device": device, "dtype": dtype}
        statistics = {
            "running_mean": torch.zeros(num_features, **factory),
            "running_cov": torch.zeros(num_features, num_features, **factory),
            "whitening_matrix": torch.eye(num_features, **factory),
        }
        super().__init__(
            num_features, momentum, eps, bias_correction, process_group, statistics, device
        )
        self.backprop = backprop
        self.update_every = int(update_every)
        self.solver = solver
        self.iterations = int(iterations)
        self._steps: int | None = None  # t on the host; None: read it from the buffer

    def reset_running_stats(self) -> None:
        """Forget all statistics: the module is the identity again until the next update."""
        super().reset_running_stats()
        self.whitening_matrix.copy_(torch.eye(self.num_features))
        self._steps = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        self._steps = None  # t comes with the state
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def resolved_solver(self) -> str:
        """The solver in use: ``auto`` is ``eigh`` on the CPU and ``newton`` elsewhere."""
        if self.solver != "auto":
            return self.solver
        return "eigh" if self.running_cov.device.type == "cpu" else "newton"

    def _inverse_sqrt(self, cov: Tensor) -> Tensor:
        """W = (cov + eps I)^{-1/2} (D, D) by the solver in use."""
        if self.resolved_solver() == "eigh":
            return inverse_sqrt(cov, self.eps)
        return inverse_sqrt_newton(cov, self.eps, self.iterations)

    def _recompute_now(self) -> bool:
        """Whether this training step (t already counted) recomputes W: t = 1, k + 1, 2k + 1..."""
        if self.update_every == 1:
            return True
        if self._steps is None:
            self._steps = int(self.num_batches_tracked)  # one read, then counted on the host
        else:
            self._steps += 1
        return (self._steps - 1) % self.update_every == 0

    def _compute_dtype(self) -> torch.dtype:
        """float64 (float32 on MPS, which has no float64), as IsoBN's batch statistics."""
        return statistics_dtype(self.running_mean.device)

    def estimates(self) -> tuple[Tensor, Tensor]:
        """The bias-corrected running (mean (D,), covariance (D, D)), float64."""
        dtype = self._compute_dtype()
        c = self._safe_correction(dtype)
        return self.running_mean.to(dtype) / c, self.running_cov.to(dtype) / c

    def _update(self, x: Tensor) -> tuple[Tensor, Tensor] | None:
        """Fold the batch x (N, D) (all ranks) into the running estimates; return this step's
        bias-corrected (mean, W), differentiable with `backprop`, or None for a batch of one."""
        n, batch_mean, scatter = moments(x, self.process_group, differentiable=self.backprop)
        if not self._count_batch(n):  # one row: no statistics (warns once)
            return None
        batch_cov = scatter / n  # (D, D), population
        dtype = self._compute_dtype()
        weight = self._update_weight(dtype)
        previous_mean = self.running_mean.to(dtype)
        previous_cov = self.running_cov.to(dtype)
        raw_mean = previous_mean + weight * (batch_mean - previous_mean)  # (D,)
        raw_cov = previous_cov + weight * (batch_cov - previous_cov)  # (D, D)
        with torch.no_grad():
            self.running_mean.copy_(raw_mean)
            self.running_cov.copy_(raw_cov)
        c = self._safe_correction(dtype)
        mean = raw_mean / c
        if self._recompute_now():
            matrix = self._inverse_sqrt(raw_cov / c)  # (D, D), float64
            with torch.no_grad():
                self.whitening_matrix.copy_(matrix)
        else:
            matrix = self.whitening_matrix
        return mean, matrix

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        updated = None
        if self.training:
            updated = self._update(x.reshape(-1, self.num_features))
        if updated is None:
            dtype = self._compute_dtype()
            mean = self.running_mean.to(dtype) / self._safe_correction(dtype)
            matrix = self.whitening_matrix
        else:
            mean, matrix = updated
        if not (self.backprop and self.training):
            mean, matrix = mean.detach(), matrix.detach()
        return whiten(x, mean, matrix)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, momentum={self.momentum}, eps={self.eps}, "
            f"bias_correction={self.bias_correction}, backprop={self.backprop}, "
            f"update_every={self.update_every}, solver={self.solver}, iterations={self.iterations}"
        )
