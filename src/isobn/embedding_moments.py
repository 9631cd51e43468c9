"""The shared moments behind every isotropy measure (isobn.isotropy): input checks, and the
mean, global scale and second moments of an (N, D) embedding from either side (the D x D
covariance when N >= D, the N x N Gram matrix when N < D), accumulated over row chunks in
float64. See isobn.isotropy for the conventions (population moments, exact centring of
constant columns, one global scale)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

    ArrayLike = np.ndarray | torch.Tensor
else:
    ArrayLike = Any

CHUNK_BYTES = 1 << 26  # ~64 MiB of float64 per chunk of rows


def as_embedding_matrix(X: ArrayLike) -> np.ndarray:
    """Validate ``X`` and return it as a 2-D floating numpy array of shape (N, D).

    Torch tensors are detached and moved to CPU; float32/float64 data keep their dtype (chunks are
    cast to float64 later, so a large float32 matrix is never copied whole), anything else is cast
    to float64. Raises ``ValueError`` for non-2-D input, N < 2, D < 1, complex or non-finite data.
    """
    if hasattr(X, "detach") and hasattr(X, "cpu"):  # torch.Tensor, without importing torch
        t = X.detach().cpu()
        if t.is_complex():
            raise ValueError("embeddings must be real-valued, got a complex tensor")
        if str(t.dtype) not in ("torch.float32", "torch.float64"):
            t = t.double()
        X = t.numpy()
    A = np.asarray(X)
    if A.ndim != 2:
        raise ValueError(
            f"embeddings must be a 2-D (N, D) matrix (rows = samples), got shape {A.shape}"
        )
    n, d = A.shape
    if n < 2:
        raise ValueError(f"need at least 2 rows (samples) to measure isotropy, got N={n}")
    if d < 1:
        raise ValueError("embeddings must have at least one dimension, got D=0")
    if np.iscomplexobj(A):
        raise ValueError("embeddings must be real-valued, got a complex array")
    if A.dtype not in (np.float32, np.float64):
        A = A.astype(np.float64)
    for chunk in row_chunks(A):
        if not np.isfinite(chunk).all():
            raise ValueError("embeddings contain NaN or infinite values")
    return A


def row_chunks(A: np.ndarray):
    """Yield consecutive row blocks of ``A`` of about ``CHUNK_BYTES`` bytes in float64."""
    step = max(1, CHUNK_BYTES // (8 * A.shape[1]))
    for start in range(0, A.shape[0], step):
        yield A[start : start + step]


@dataclass(frozen=True)
class Moments:
    """Shared first/second moments of X (N, D).

    ``Z = (X - mean) / scale`` are the centred data in units of ``scale`` (|Z| <= 2), where the
    centring is done as ``(X - shift) - shift_mean`` with ``shift = X[0]`` and
    ``shift_mean = mean(X - shift)`` so that a constant column centres to exactly 0.
    ``var_unit = diag(Z^T Z) / N`` and ``mean_row_norm_unit = mean_i ||Z_i||``. The second
    moment is on one side: ``cov_unit = Z^T Z / N`` (D, D) when N >= D (population), or when
    N < D the Gram matrix ``gram_unit = Z Z^T / N`` (N, N) and ``z_unit = Z`` (N, D) itself.
    """

    shift: np.ndarray  # (D,) float64
    shift_mean: np.ndarray  # (D,) float64
    scale: float
    var_unit: np.ndarray  # (D,) float64
    mean_row_norm_unit: float
    cov_unit: np.ndarray | None = None  # (D, D) float64, symmetric; N >= D
    gram_unit: np.ndarray | None = None  # (N, N) float64, symmetric; N < D
    z_unit: np.ndarray | None = None  # (N, D) float64; N < D

    @property
    def mean(self) -> np.ndarray:
        return self.shift + self.shift_mean

    @property
    def second(self) -> np.ndarray:
        """The side's second-moment matrix: cov_unit (D, D) or gram_unit (N, N)."""
        return self.cov_unit if self.gram_unit is None else self.gram_unit


def centred_unit_chunks(A: np.ndarray, shift: np.ndarray, shift_mean: np.ndarray, scale: float):
    """Yield float64 row chunks of ``Z = ((A - shift) - shift_mean) / scale``."""
    for chunk in row_chunks(A):
        z = chunk.astype(np.float64)
        z -= shift
        z -= shift_mean
        z /= scale
        yield z


def moments(A: np.ndarray, gram: bool | None = None) -> Moments:
    """Two passes over ``A`` (validated): mean and global scale, then the second moments.

    ``gram``: the N x N side (default: when N < D) or the D x D covariance (False).
    """
    n, d = A.shape
    gram = n < d if gram is None else gram
    shift = A[0].astype(np.float64)
    total = np.zeros(d)
    maxabs = 0.0
    for chunk in row_chunks(A):
        s = chunk.astype(np.float64) - shift
        total += s.sum(axis=0)
        maxabs = max(maxabs, float(np.abs(s).max()))
    shift_mean = total / n
    scale = maxabs if maxabs > 0.0 else 1.0
    if gram:  # Z (N, D) is smaller than a D x D matrix here
        z = np.concatenate(list(centred_unit_chunks(A, shift, shift_mean, scale)))
        g = z @ z.T / n  # (N, N)
        norm_mean = float(np.sqrt(np.einsum("ij,ij->i", z, z)).mean())
        var = np.einsum("ij,ij->j", z, z) / n  # (D,)
        return Moments(shift, shift_mean, scale, var, norm_mean, None, 0.5 * (g + g.T), z)
    cov = np.zeros((d, d))
    norm_sum = 0.0
    for z in centred_unit_chunks(A, shift, shift_mean, scale):
        cov += z.T @ z
        norm_sum += float(np.sqrt(np.einsum("ij,ij->i", z, z)).sum())
    cov /= n
    cov = 0.5 * (cov + cov.T)
    return Moments(shift, shift_mean, scale, np.diag(cov).copy(), norm_sum / n, cov)


def moment_eigvals(m: Moments, d: int) -> np.ndarray:
    """Eigenvalues (D,) of ``Z^T Z / N`` from either side, descending, clipped at 0."""
    return padded(np.linalg.eigvalsh(m.second), d)


def padded(evals: np.ndarray, d: int) -> np.ndarray:
    """Ascending eigenvalues of the side's matrix (D or N of them) -> the D eigenvalues of
    ``Z^T Z / N``, descending, negatives clipped to 0 (the Gram side's D - N missing ones are
    0)."""
    lam = np.clip(evals[::-1], 0.0, None)
    return np.concatenate([lam, np.zeros(d - lam.size)])
