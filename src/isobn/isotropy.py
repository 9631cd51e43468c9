"""Isotropy and anisotropy measures for an (N, D) embedding matrix.

Every function takes rows = samples (N) and columns = embedding dimensions (D), as a numpy array
or a torch tensor, and computes in float64 numpy. When N >= D the covariance is D x D and is
accumulated over chunks of rows, so N = 100,000, D = 1,024 is routine; when N < D the N x N Gram
matrix Z Z^T / N stands in for it (it has the same non-zero eigenvalues, trace and Frobenius
norm), so a few rows of a wide embedding cost O(N^2 D) time and O(N D + N^2) memory, not O(D^3)
and O(D^2).

Conventions used throughout (all choices are deliberate and documented per function):

* Moments are *population* moments (ddof=0): ``cov = Xc^T Xc / N`` with ``Xc = X - mean``.
  The scale-free measures (correlations, IsoScore, effective rank, PC shares) do not depend on it.
* Centring is exact for constant columns (the data are shifted by their first row before the mean
  is taken), so a constant column has a standard deviation of exactly 0.
* Internally the centred data are divided by one global scale factor before any products are
  formed, so squares neither overflow nor underflow for any finite input.
* A dimension is *dead* when its std is ``<= 1e-8 * max_j std_j`` (relative tolerance); when every
  column is constant all dimensions are dead.

Measures and references:

* ``isoscore`` -- W. Rudman, N. Gillman, T. Rayne, C. Eickhoff, "IsoScore: Measuring the
  Uniformity of Embedding Space Utilization", Findings of ACL 2022.
* ``partition_isotropy`` -- J. Mu, P. Viswanath, "All-but-the-Top: Simple and Effective
  Postprocessing for Word Representations", ICLR 2018.
* ``effective_rank`` -- O. Roy, M. Vetterli, "The effective rank: A measure of effective
  dimensionality", EUSIPCO 2007 (applied to covariance eigenvalues).
* ``avg_cosine`` -- average pairwise cosine similarity, the anisotropy measure of K. Ethayarajh,
  "How Contextual are Contextualized Word Representations?", EMNLP 2019.

``report(X)`` computes the shared pieces (mean, covariance or Gram, one eigendecomposition) once and
returns every measure as a float in a flat dict. Every value is finite for any finite input with
N >= 2 and magnitudes below ~1e307 (differences of entries must not overflow float64).
"""

from __future__ import annotations

import numpy as np

from isobn.embedding_moments import (
    ArrayLike,
    Moments,
    as_embedding_matrix,
    centred_unit_chunks,
    moment_eigvals,
    moments,
    padded,
    row_chunks,
)

__all__ = [
    "DEAD_RTOL",
    "as_embedding_matrix",
    "avg_cosine",
    "correlation_from_cov",
    "correlation_stats",
    "covariance",
    "covariance_eigvals",
    "dead_dims_mask",
    "effective_rank",
    "effective_rank_from_eigvals",
    "isoscore",
    "isoscore_from_cov",
    "isoscore_from_eigvals",
    "partition_isotropy",
    "pc_share",
    "per_dim_std",
    "report",
]

DEAD_RTOL = 1e-8
"""A dimension is dead when its std is <= DEAD_RTOL * (largest per-dimension std)."""

_BLOCK_BYTES = 1 << 24  # ~16 MiB of float64 per block of correlations (N < D)


def covariance(X: ArrayLike) -> np.ndarray:
    """Population covariance ``Xc^T Xc / N`` (ddof=0), shape (D, D), float64.

    Accumulated over row chunks (never N x N). Entries can overflow to inf only when
    |X| exceeds ~1e154; ``report`` never forms this unscaled matrix.
    """
    m = moments(as_embedding_matrix(X), gram=False)
    return m.cov_unit * (m.scale * m.scale)


# --------------------------------------------------------------------------------------------
# Per-dimension statistics and correlations
# --------------------------------------------------------------------------------------------


def per_dim_std(cov: np.ndarray) -> np.ndarray:
    """Per-dimension standard deviation ``sqrt(diag(cov))`` (negatives clipped to 0), shape (D,).

    Population std (ddof=0) when ``cov`` comes from [`covariance`][isobn.isotropy.covariance].
    """
    return np.sqrt(np.clip(np.diag(cov), 0.0, None))


def dead_dims_mask(std: np.ndarray, rtol: float = DEAD_RTOL) -> np.ndarray:
    """Boolean mask (D,) of dead dimensions: ``std_j <= rtol * max_k std_k``.

    The tolerance is relative, so it is scale-free; constant columns have std exactly 0 (see
    module notes) and are always dead, and if every column is constant every dimension is dead.
    """
    std = np.asarray(std, dtype=np.float64)
    if std.size == 0:
        return np.zeros(0, dtype=bool)
    return std <= rtol * float(std.max())


def _std_mean_cv(std: np.ndarray) -> tuple[float, float]:
    """Mean of the per-dim std and its coefficient of variation std(std)/mean(std) (ddof=0)."""
    mean = float(std.mean())
    cv = float(std.std() / mean) if mean > 0.0 else 0.0
    return mean, cv


def correlation_from_cov(cov: np.ndarray, alive: np.ndarray | None = None) -> np.ndarray:
    """Pearson correlation ``rho_ij = cov_ij / (std_i std_j)`` among the ``alive`` dimensions.

    ``alive`` is a boolean mask (D,); by default every dimension not flagged by
    [`dead_dims_mask`][isobn.isotropy.dead_dims_mask]. Returns an (A, A) matrix, A = number of alive
    dims, with unit diagonal and entries clipped to [-1, 1].
    """
    std = per_dim_std(cov)
    if alive is None:
        alive = ~dead_dims_mask(std)
    idx = np.flatnonzero(alive)
    s = std[idx]
    corr = cov[np.ix_(idx, idx)] / np.outer(s, s)
    np.clip(corr, -1.0, 1.0, out=corr)
    np.fill_diagonal(corr, 1.0)
    return corr


def correlation_stats(corr: np.ndarray, threshold: float = 0.5) -> tuple[float, float]:
    """``(mean |rho|, fraction of |rho| > threshold)`` over off-diagonal pairs i < j of ``corr``.

    With fewer than two dimensions there are no pairs and both values are 0.0.
    """
    a = corr.shape[0]
    if a < 2:
        return 0.0, 0.0
    iu = np.triu_indices(a, k=1)
    off = np.abs(corr[iu])
    return float(off.mean()), float((off > threshold).mean())


def _correlation_stats_of_columns(
    z: np.ndarray, var: np.ndarray, alive: np.ndarray, threshold: float = 0.5
) -> tuple[float, float]:
    """[`correlation_stats`][isobn.isotropy.correlation_stats] of the centred columns z (N, D) with
    variances var (D,) (z^T z / N on the diagonal) among the ``alive`` ones, without an (A, A)
    matrix.

    ``u = z_alive / sqrt(N var)`` has unit columns and ``rho = u^T u``. The pairs i < j are
    taken a block of rows of rho at a time (the block's own upper triangle, then everything to
    its right), so memory is O(N A + block * A), never A x A.
    """
    idx = np.flatnonzero(alive)
    a = idx.size
    if a < 2:
        return 0.0, 0.0
    u = z[:, idx] / np.sqrt(z.shape[0] * var[idx])  # (N, A)
    step = max(1, _BLOCK_BYTES // (8 * a))
    total, above = 0.0, 0
    for start in range(0, a, step):
        stop = min(a, start + step)
        rows = u[:, start:stop]  # (N, b)
        for block in (np.triu(rows.T @ rows, k=1), rows.T @ u[:, stop:]):  # (b, b), (b, A - stop)
            np.abs(block, out=block)
            np.minimum(block, 1.0, out=block)  # clipped to [-1, 1] as correlation_from_cov does
            total += float(block.sum())  # the zeroed lower triangle adds nothing
            above += int(np.count_nonzero(block > threshold))
    pairs = a * (a - 1) / 2
    return total / pairs, above / pairs


# --------------------------------------------------------------------------------------------
# Spectrum-based measures
# --------------------------------------------------------------------------------------------


def covariance_eigvals(cov: np.ndarray) -> np.ndarray:
    """Eigenvalues of a symmetric PSD covariance, descending, negatives clipped to 0, shape (D,)."""
    ev = np.linalg.eigvalsh(cov)[::-1]
    return np.clip(ev, 0.0, None)


def isoscore_from_eigvals(eigvals: np.ndarray) -> float:
    """IsoScore (Rudman et al. 2022) from the covariance eigenvalues (all D of them).

    The eigenvalues are the variances of the centred data after PCA reorientation, Sigma_D.
    With n = D:

    * ``Sigma_hat = sqrt(n) Sigma_D / ||Sigma_D||_2``   (so ``||Sigma_hat||_2 = sqrt(n)``)
    * isotropy defect ``delta = ||Sigma_hat - 1||_2 / sqrt(2 (n - sqrt(n)))``  in [0, 1]
    * fraction of dimensions used ``k = (n - delta^2 (n - sqrt(n)))^2 / n^2``  in [1/n, 1]
    * ``IsoScore = (n k - 1) / (n - 1)``  in [0, 1]: 1 = isotropic, 0 = a single direction.

    Dead dimensions count in n (as in the reference implementation). Degenerate cases: zero total
    variance -> 0.0; D == 1 with positive variance -> 1.0. The result is clipped to [0, 1].
    """
    lam = np.clip(np.asarray(eigvals, dtype=np.float64), 0.0, None)
    n = lam.size
    top = float(lam.max()) if n else 0.0
    if top <= 0.0:
        return 0.0
    if n == 1:
        return 1.0
    lam = lam / top  # scale-free; avoids overflow in the norm
    sigma_hat = np.sqrt(n) * lam / np.linalg.norm(lam)
    delta2 = float(np.sum((sigma_hat - 1.0) ** 2)) / (2.0 * (n - np.sqrt(n)))
    k = (n - delta2 * (n - np.sqrt(n))) ** 2 / n**2
    phi = (n * k - 1.0) / (n - 1.0)
    return float(np.clip(phi, 0.0, 1.0))


def isoscore_from_cov(cov: np.ndarray, n: int | None = None) -> float:
    """IsoScore from the trace and Frobenius norm of a symmetric PSD matrix (k, k), no eigenvalues.

    IsoScore depends on the eigenvalues only through ``sum lambda = tr(cov)`` and
    ``||lambda||_2 = ||cov||_F`` ([`isoscore_from_eigvals`][isobn.isotropy.isoscore_from_eigvals]
    with ``lambda >= 0``):

    * ``delta^2 = (n - sqrt(n) tr / ||cov||_F) / (n - sqrt(n))``
    * ``IsoScore = (tr^2 / ||cov||_F^2 - 1) / (n - 1)``, clipped to [0, 1].

    ``n`` is the dimension D (default k); a Gram matrix ``Z Z^T / N`` (N, N) with ``n = D`` gives
    the IsoScore of ``Z^T Z / N``, whose non-zero eigenvalues it shares. Equal to the eigenvalue
    route up to round-off (its clipping of round-off negative eigenvalues included). Zero total
    variance -> 0.0; n == 1 with positive variance -> 1.0.
    """
    c = np.asarray(cov, dtype=np.float64)
    n = c.shape[0] if n is None else n
    top = float(np.abs(c).max()) if c.size else 0.0
    if top <= 0.0 or float(np.trace(c)) <= 0.0:
        return 0.0
    if n == 1:
        return 1.0
    c = c / top  # scale-free; no overflow or underflow in the squares
    ratio = float(np.trace(c)) ** 2 / float(np.einsum("ij,ij->", c, c))
    return float(np.clip((ratio - 1.0) / (n - 1), 0.0, 1.0))


def isoscore(X: ArrayLike) -> float:
    """IsoScore of the (N, D) point cloud ``X``; see
    [`isoscore_from_cov`][isobn.isotropy.isoscore_from_cov].

    Invariant to the covariance normalisation (ddof), to translation and to global scale.
    No eigendecomposition: a trace and a Frobenius norm of the covariance (or Gram) matrix.
    """
    A = as_embedding_matrix(X)
    return isoscore_from_cov(moments(A).second, A.shape[1])


def effective_rank_from_eigvals(eigvals: np.ndarray) -> float:
    """Effective rank (Roy & Vetterli 2007) ``exp(H(p))`` with ``p_k = lambda_k / sum lambda``.

    ``lambda`` are covariance eigenvalues (negatives clipped to 0), ``H(p) = -sum p_k log p_k`` with
    ``0 log 0 = 0``. Ranges in [1, D]; defined as 0.0 when the total variance is 0 (no direction
    carries any variance, matching the rank of the zero matrix).
    """
    lam = np.clip(np.asarray(eigvals, dtype=np.float64), 0.0, None)
    total = float(lam.sum())
    if total <= 0.0:
        return 0.0
    p = lam[lam > 0.0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def effective_rank(X: ArrayLike) -> float:
    """Effective rank of the covariance of ``X``; see
    [`effective_rank_from_eigvals`][isobn.isotropy.effective_rank_from_eigvals]."""
    A = as_embedding_matrix(X)
    return effective_rank_from_eigvals(moment_eigvals(moments(A), A.shape[1]))


def pc_share(eigvals: np.ndarray, k: int) -> float:
    """Share of total variance in the top ``k`` eigenvalues: ``sum_{i<k} lam_i / sum lam``.

    ``k`` larger than D uses all eigenvalues (share 1.0). Zero total variance -> 0.0.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    lam = np.sort(np.clip(np.asarray(eigvals, dtype=np.float64), 0.0, None))[::-1]
    total = float(lam.sum())
    if total <= 0.0:
        return 0.0
    return float(min(1.0, lam[:k].sum() / total))


# --------------------------------------------------------------------------------------------
# Partition-function isotropy and average cosine
# --------------------------------------------------------------------------------------------


def _partition_isotropy(A: np.ndarray, m: Moments, eigvecs: np.ndarray) -> float:
    """Partition isotropy given moments and the eigenvectors (columns) of the covariance."""
    if m.mean_row_norm_unit <= 0.0:  # all rows identical: every Z(c) = N
        return 1.0
    vecs = eigvecs / m.mean_row_norm_unit  # fold the row scaling into the directions
    d = vecs.shape[1]
    # Streaming log-sum-exp over rows, for +c (first D entries) and -c (last D entries).
    run_max = np.full(2 * d, -np.inf)
    run_sum = np.zeros(2 * d)
    for z in centred_unit_chunks(A, m.shift, m.shift_mean, m.scale):
        s = z @ vecs  # (rows, D): c^T w_i
        new_max = np.maximum(run_max, np.concatenate([s.max(axis=0), -s.min(axis=0)]))
        run_sum *= np.exp(run_max - new_max)
        e = s - new_max[:d]
        np.exp(e, out=e)
        run_sum[:d] += e.sum(axis=0)
        np.negative(s, out=s)
        s -= new_max[d:]
        np.exp(s, out=s)
        run_sum[d:] += s.sum(axis=0)
        run_max = new_max
    log_z = run_max + np.log(run_sum)
    return float(np.exp(log_z.min() - log_z.max()))


def _partition_isotropy_gram(m: Moments, evals: np.ndarray, gram_vecs: np.ndarray) -> float:
    """Partition isotropy from the Gram side (N < D), no D-dimensional direction formed.

    For an eigenvector u_k of ``G = Z Z^T / N`` with eigenvalue l_k > 0, c_k = Z^T u_k / ||Z^T u_k||
    is a unit eigenvector of ``Z^T Z`` and ``Z c_k = sqrt(N l_k) u_k``; every direction orthogonal
    to the rows (there are D - rank >= 1 of them) has ``Z c = 0``, ``Z(c) = N``.
    """
    if m.mean_row_norm_unit <= 0.0:  # all rows identical: every Z(c) = N
        return 1.0
    n = gram_vecs.shape[0]
    lam = np.clip(evals, 0.0, None)  # (N,), eigenvalues of the columns of gram_vecs
    s = gram_vecs * (np.sqrt(n * lam) / m.mean_row_norm_unit)  # (N, N): c_k^T w_i
    s = np.concatenate([s, -s], axis=1)  # +c and -c
    peak = s.max(axis=0)
    log_z = peak + np.log(np.exp(s - peak).sum(axis=0))
    log_z = np.append(log_z, np.log(n))  # the null space
    return float(np.exp(log_z.min() - log_z.max()))


def partition_isotropy(X: ArrayLike) -> float:
    """Partition-function isotropy ``I(W) = min_c Z(c) / max_c Z(c)`` (Mu & Viswanath 2018).

    ``Z(c) = sum_i exp(c^T w_i)``, with ``c`` ranging over the unit eigenvectors of ``W^T W`` taken
    with *both* signs (an eigenvector's sign is arbitrary, so +/-c makes the value deterministic).

    Choice of ``W`` (documented, differs from the paper's raw word vectors): the rows are
    **mean-centred** and then **scaled so that the average row norm is 1**:
    ``w_i = (x_i - mean) / mean_j ||x_j - mean||``. This makes I invariant to translation and global
    scale, keeps ``exp`` in range, and ``W^T W`` has the covariance's eigenvectors (null-space
    eigenvectors included; they give Z = N). ``log Z`` is computed with a streaming log-sum-exp, so
    the value is finite for any scale. By Jensen, ``Z(c) >= N`` for centred rows, so I is in (0, 1];
    I near 1 = isotropic, near 0 = some direction carries large one-sided outliers. If all rows are
    identical, every Z(c) = N and I = 1.0.
    """
    A = as_embedding_matrix(X)
    m = moments(A)
    evals, vecs = np.linalg.eigh(m.second)
    if m.gram_unit is not None:
        return _partition_isotropy_gram(m, evals, vecs)
    return _partition_isotropy(A, m, vecs)


def avg_cosine(X: ArrayLike) -> float:
    """Mean cosine similarity over ordered pairs i != j of the *raw* (uncentred) rows.

    With ``u_i = x_i / ||x_i||`` (``u_i = 0`` for a zero row, so it counts as cosine 0 with
    everything but stays in the pair count): ``sum_{i!=j} u_i.u_j = ||sum_i u_i||^2 -
    sum_i ||u_i||^2``, divided by ``N (N - 1)``. O(N D) time, no N x N matrix; clipped to [-1, 1].
    """
    return _avg_cosine(as_embedding_matrix(X))


def _avg_cosine(A: np.ndarray) -> float:
    """[`avg_cosine`][isobn.isotropy.avg_cosine] on an already validated matrix."""
    n, d = A.shape
    u_sum = np.zeros(d)
    sq_sum = 0.0
    for chunk in row_chunks(A):
        x = chunk.astype(np.float64)
        peak = np.abs(x).max(axis=1, keepdims=True)  # pre-scale rows: no overflow in the norm
        peak[peak == 0.0] = 1.0
        x /= peak
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        nz = norms > 0.0
        x[nz] /= norms[nz, None]
        x[~nz] = 0.0
        u_sum += x.sum(axis=0)
        sq_sum += float(np.einsum("ij,ij->", x, x))
    pair_sum = float(u_sum @ u_sum) - sq_sum
    return float(np.clip(pair_sum / (n * (n - 1)), -1.0, 1.0))


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def report(X: ArrayLike) -> dict[str, float]:
    """All isotropy measures of ``X`` (N, D) as a flat ``dict[str, float]``; every value is finite.

    Keys: ``n``, ``d``, ``std_mean``, ``std_cv``, ``dead_dims``, ``mean_abs_corr``,
    ``frac_abs_corr_gt_0_5``, ``isoscore``, ``partition_isotropy``, ``avg_cosine``,
    ``effective_rank``, ``top1_pc_share``, ``top10_pc_share``.

    * ``std_mean`` / ``std_cv``: mean of the per-dimension population std (ddof=0) over all D dims
      (dead ones included), and ``std(std) / mean(std)`` (ddof=0; 0.0 when the mean is 0).
    * ``dead_dims``: number of dims with std <= ``DEAD_RTOL`` * max std (as a float).
    * ``mean_abs_corr`` / ``frac_abs_corr_gt_0_5``: over off-diagonal pairs i < j of the Pearson
      correlation among non-dead dims (0.0 when fewer than two are alive).
    * the rest: see the individual functions; eigenvalues and eigenvectors are computed once.

    Cost, N >= D: three passes over X (O(N D^2) flops), one D x D eigendecomposition; memory
    O(D^2 + chunk * D). N < D: the N x N Gram side, O(N^2 D + N^3) flops and one N x N
    eigendecomposition, plus O(N D^2) for the correlations; memory O(N D + N^2).
    """
    A = as_embedding_matrix(X)
    n, d = A.shape
    m = moments(A)

    std = np.sqrt(np.clip(m.var_unit, 0.0, None))  # in units of m.scale
    dead = dead_dims_mask(std)
    std_mean_unit, std_cv = _std_mean_cv(std)
    evals, vecs = np.linalg.eigh(m.second)
    lam = padded(evals, d)
    if m.gram_unit is None:
        mean_abs, frac_gt = correlation_stats(correlation_from_cov(m.cov_unit, ~dead), 0.5)
        partition = _partition_isotropy(A, m, vecs)
    else:
        mean_abs, frac_gt = _correlation_stats_of_columns(m.z_unit, m.var_unit, ~dead, 0.5)
        partition = _partition_isotropy_gram(m, evals, vecs)

    return {
        "n": float(n),
        "d": float(d),
        "std_mean": std_mean_unit * m.scale,
        "std_cv": std_cv,
        "dead_dims": float(dead.sum()),
        "mean_abs_corr": mean_abs,
        "frac_abs_corr_gt_0_5": frac_gt,
        "isoscore": isoscore_from_cov(m.second, d),
        "partition_isotropy": partition,
        "avg_cosine": _avg_cosine(A),
        "effective_rank": effective_rank_from_eigvals(lam),
        "top1_pc_share": pc_share(lam, 1),
        "top10_pc_share": pc_share(lam, 10),
    }
