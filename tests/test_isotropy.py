"""Closed-form and brute-force checks for isobn.isotropy."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from isobn import isotropy as iso

REPORT_KEYS = {
    "n",
    "d",
    "std_mean",
    "std_cv",
    "dead_dims",
    "mean_abs_corr",
    "frac_abs_corr_gt_0_5",
    "isoscore",
    "partition_isotropy",
    "avg_cosine",
    "effective_rank",
    "top1_pc_share",
    "top10_pc_share",
}


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _assert_all_finite(r: dict[str, float]) -> None:
    assert set(r) == REPORT_KEYS
    for k, v in r.items():
        assert isinstance(v, float), k
        assert math.isfinite(v), (k, v)


def _standardise(X: np.ndarray) -> np.ndarray:
    return (X - X.mean(axis=0)) / X.std(axis=0)


# ---------------------------------------------------------------- closed-form reference cases


def test_isotropic_gaussian() -> None:
    X = _rng(1).standard_normal((20000, 64))
    r = iso.report(X)
    _assert_all_finite(r)
    assert r["isoscore"] > 0.9
    assert r["effective_rank"] > 0.9 * 64
    assert r["partition_isotropy"] > 0.95
    assert r["dead_dims"] == 0.0
    assert r["mean_abs_corr"] < 0.02
    assert r["frac_abs_corr_gt_0_5"] == 0.0
    assert abs(r["avg_cosine"]) < 0.01
    assert r["n"] == 20000.0 and r["d"] == 64.0


def test_rank_one_data() -> None:
    rng = _rng(2)
    t = rng.standard_normal((5000, 1))
    direction = rng.standard_normal((1, 32))
    X = t @ direction + 3.0
    r = iso.report(X)
    _assert_all_finite(r)
    assert r["isoscore"] < 0.05
    assert r["effective_rank"] < 1.1
    assert r["top1_pc_share"] > 0.999
    assert r["mean_abs_corr"] == pytest.approx(1.0, abs=1e-9)
    assert r["frac_abs_corr_gt_0_5"] == 1.0


def test_constant_column_is_dead_and_all_finite() -> None:
    X = _rng(3).standard_normal((500, 8))
    X[:, 5] = 0.1  # not exactly representable: centring must still give std exactly 0
    r = iso.report(X)
    _assert_all_finite(r)
    assert r["dead_dims"] == 1.0
    # correlations exclude the dead dim: brute force on the remaining 7 columns
    alive = np.delete(X, 5, axis=1)
    c = np.corrcoef(alive, rowvar=False)
    off = np.abs(c[np.triu_indices(7, 1)])
    assert r["mean_abs_corr"] == pytest.approx(off.mean(), rel=1e-9)


def test_std_cv_known_scales() -> None:
    scales = np.array([1.0, 2.0, 3.0, 4.0])
    X = _standardise(_rng(4).standard_normal((1000, 4))) * scales + 7.0
    r = iso.report(X)
    expected_cv = np.std(scales) / np.mean(scales)  # population std, ddof=0
    assert r["std_cv"] == pytest.approx(expected_cv, rel=1e-9)
    assert r["std_mean"] == pytest.approx(2.5, rel=1e-9)
    np.testing.assert_allclose(iso.per_dim_std(iso.covariance(X)), scales, rtol=1e-9)


def test_covariance_matches_numpy_population() -> None:
    X = _rng(5).standard_normal((300, 6)) * 1e3 + 1e6
    np.testing.assert_allclose(iso.covariance(X), np.cov(X, rowvar=False, ddof=0), rtol=1e-8)


def test_avg_cosine_brute_force() -> None:
    rng = _rng(6)
    X = rng.standard_normal((57, 9)) + 0.7
    X[3] = 0.0  # a zero row counts as cosine 0 with everything
    n = X.shape[0]
    norms = np.linalg.norm(X, axis=1)
    U = np.divide(X, norms[:, None], out=np.zeros_like(X), where=norms[:, None] > 0)
    G = U @ U.T
    brute = (G.sum() - np.trace(G)) / (n * (n - 1))
    assert iso.avg_cosine(X) == pytest.approx(brute, rel=1e-10, abs=1e-12)
    assert iso.report(X)["avg_cosine"] == pytest.approx(brute, rel=1e-10, abs=1e-12)


def test_avg_cosine_identical_rows_is_one() -> None:
    X = np.tile(np.array([[1.0, -2.0, 3.0]]), (10, 1))
    assert iso.avg_cosine(X) == pytest.approx(1.0)


def test_mean_abs_corr_brute_force() -> None:
    rng = _rng(7)
    X = rng.standard_normal((400, 12)) @ rng.standard_normal((12, 12))
    c = np.corrcoef(X, rowvar=False)
    off = np.abs(c[np.triu_indices(12, 1)])
    r = iso.report(X)
    assert r["mean_abs_corr"] == pytest.approx(off.mean(), rel=1e-9)
    assert r["frac_abs_corr_gt_0_5"] == pytest.approx((off > 0.5).mean())


def test_top_k_shares_diagonal_covariance() -> None:
    variances = np.arange(1.0, 21.0)  # 20 independent dims, variances 1..20
    X = _standardise(_rng(8).standard_normal((50000, 20)))
    # decorrelate exactly: whiten with the sample covariance, then scale
    L = np.linalg.cholesky(np.cov(X, rowvar=False, ddof=0))
    X = np.linalg.solve(L, X.T).T * np.sqrt(variances)
    r = iso.report(X)
    lam = np.sort(variances)[::-1]
    assert r["top1_pc_share"] == pytest.approx(lam[0] / lam.sum(), rel=1e-8)
    assert r["top10_pc_share"] == pytest.approx(lam[:10].sum() / lam.sum(), rel=1e-8)
    p = lam / lam.sum()
    assert r["effective_rank"] == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-8)
    assert iso.pc_share(lam, 100) == 1.0


def test_effective_rank_and_isoscore_from_eigvals_closed_form() -> None:
    assert iso.effective_rank_from_eigvals(np.ones(7)) == pytest.approx(7.0)
    assert iso.effective_rank_from_eigvals(np.array([3.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert iso.effective_rank_from_eigvals(np.zeros(4)) == 0.0
    assert iso.isoscore_from_eigvals(np.ones(50)) == pytest.approx(1.0)
    assert iso.isoscore_from_eigvals(np.r_[5.0, np.zeros(49)]) == pytest.approx(0.0, abs=1e-12)
    assert iso.isoscore_from_eigvals(np.zeros(5)) == 0.0
    assert iso.isoscore_from_eigvals(np.array([2.0])) == 1.0
    # half the dims used equally: k = 1/2, so phi = (n/2 - 1) / (n - 1)
    n = 16
    assert iso.isoscore_from_eigvals(np.r_[np.ones(8), np.zeros(8)]) == pytest.approx(
        (n / 2 - 1) / (n - 1)
    )


def test_partition_isotropy_isotropic_vs_anisotropic() -> None:
    rng = _rng(9)
    iso_X = rng.standard_normal((20000, 32))
    assert iso.partition_isotropy(iso_X) > 0.95
    # strongly anisotropic: one direction carries rare, large one-sided spikes
    aniso = 0.01 * rng.standard_normal((20000, 32))
    spikes = rng.random(20000) < 0.01
    aniso[spikes, 0] += 50.0
    value = iso.partition_isotropy(aniso)
    assert 0.0 <= value < 0.01
    # a Gaussian with one dominant direction is measurably less isotropic too
    gauss_aniso = rng.standard_normal((20000, 32)) * np.r_[30.0, np.ones(31)]
    assert iso.partition_isotropy(gauss_aniso) < 0.75


def test_scale_and_translation_invariance() -> None:
    X = _rng(10).standard_normal((2000, 10)) * np.linspace(1, 3, 10)
    base = iso.report(X)
    for a, b in [(1e-6, 0.0), (1e6, 0.0), (1.0, 1e6), (1e-6, 1e-3)]:
        r = iso.report(a * X + b)
        _assert_all_finite(r)
        for key in (
            "std_cv",
            "mean_abs_corr",
            "isoscore",
            "partition_isotropy",
            "effective_rank",
            "top1_pc_share",
            "top10_pc_share",
        ):
            assert r[key] == pytest.approx(base[key], rel=1e-6, abs=1e-9), (key, a, b)
        assert r["std_mean"] == pytest.approx(a * base["std_mean"], rel=1e-6)


# ---------------------------------------------------------------- degenerate inputs


@pytest.mark.parametrize(
    "X",
    [
        np.full((10, 4), 3.0),  # all constant
        np.zeros((2, 3)),  # all zero, N = 2
        np.array([[1.0], [2.0]]),  # D = 1
        np.tile(_rng(11).standard_normal((50, 1)), (1, 5)),  # duplicated columns
        _rng(12).standard_normal((30, 6)) * 1e6,
        _rng(13).standard_normal((30, 6)) * 1e-6,
        np.r_[np.zeros((999, 4)), np.ones((1, 4)) * 1e6],  # one huge outlier row
        _rng(14).standard_normal((5, 20)),  # N < D
        np.array([[1e300, -1e300], [-1e300, 1e300], [0.0, 5.0]]),  # extreme magnitudes
    ],
)
def test_degenerate_inputs_are_finite(X: np.ndarray) -> None:
    _assert_all_finite(iso.report(X))


def test_all_constant_matrix_values() -> None:
    r = iso.report(np.full((10, 4), 3.0))
    assert r["dead_dims"] == 4.0
    assert r["std_mean"] == 0.0 and r["std_cv"] == 0.0
    assert r["mean_abs_corr"] == 0.0 and r["frac_abs_corr_gt_0_5"] == 0.0
    assert r["isoscore"] == 0.0 and r["effective_rank"] == 0.0
    assert r["top1_pc_share"] == 0.0 and r["top10_pc_share"] == 0.0
    assert r["partition_isotropy"] == 1.0
    assert r["avg_cosine"] == pytest.approx(1.0)


def test_duplicated_columns() -> None:
    x = _rng(15).standard_normal((100, 1))
    r = iso.report(np.hstack([x, x, -x]))
    assert r["mean_abs_corr"] == pytest.approx(1.0)
    assert r["effective_rank"] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros(5), "2-D"),
        (np.zeros((2, 3, 4)), "2-D"),
        (np.zeros((1, 4)), "at least 2 rows"),
        (np.zeros((0, 4)), "at least 2 rows"),
        (np.zeros((4, 0)), "at least one dimension"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), "NaN or infinite"),
    ],
)
def test_invalid_input_raises(bad: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        iso.report(bad)


# ---------------------------------------------------------------- interop


def test_torch_tensor_input() -> None:
    X = _rng(16).standard_normal((300, 8))
    expected = iso.report(X)
    for t in (torch.from_numpy(X), torch.from_numpy(X).float(), torch.from_numpy(X).half()):
        r = iso.report(t.requires_grad_(True))
        _assert_all_finite(r)
        tol = 1e-9 if t.dtype == torch.float64 else 1e-2
        assert r["isoscore"] == pytest.approx(expected["isoscore"], rel=tol)
    assert iso.isoscore(torch.from_numpy(X)) == pytest.approx(expected["isoscore"])
    assert iso.effective_rank(torch.from_numpy(X)) == pytest.approx(expected["effective_rank"])


def test_integer_input_accepted() -> None:
    X = np.arange(40).reshape(10, 4) % 7
    _assert_all_finite(iso.report(X))


def _eigenvalue_isoscore(X: np.ndarray) -> float:
    """IsoScore by the eigenvalue route on numpy's own covariance (D, D)."""
    return iso.isoscore_from_eigvals(iso.covariance_eigvals(np.cov(X, rowvar=False)))


@pytest.mark.parametrize(
    "seed, n, d, dead",
    [(24, 500, 7, False), (25, 40, 40, True), (26, 6, 50, False), (27, 3, 200, True)],
)
def test_closed_form_isoscore_equals_the_eigenvalue_route(
    seed: int, n: int, d: int, dead: bool
) -> None:
    """tr and ||.||_F give IsoScore exactly: from the covariance (N >= D) or the N x N Gram
    matrix (N < D, which has the covariance's non-zero eigenvalues), rank-deficient too."""
    rng = _rng(seed)
    X = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * rng.random(d) + 5.0
    if dead:
        X[:, 1] = 2.0
    expected = _eigenvalue_isoscore(X)
    assert iso.isoscore(X) == pytest.approx(expected, abs=1e-12)
    assert iso.report(X)["isoscore"] == pytest.approx(expected, abs=1e-12)
    cov = np.cov(X, rowvar=False)
    assert iso.isoscore_from_cov(cov) == pytest.approx(expected, abs=1e-12)
    centred = X - X.mean(0)
    assert iso.isoscore_from_cov(centred @ centred.T, n=d) == pytest.approx(expected, abs=1e-12)


def test_closed_form_isoscore_edge_cases() -> None:
    assert iso.isoscore_from_cov(np.eye(9)) == pytest.approx(1.0, abs=1e-15)
    assert iso.isoscore_from_cov(np.diag(np.r_[3.0, np.zeros(9)])) == 0.0
    assert iso.isoscore_from_cov(np.zeros((4, 4))) == 0.0
    assert iso.isoscore_from_cov(np.array([[2.0]])) == 1.0
    half = np.diag(np.r_[np.ones(8), np.zeros(8)])  # (n/2 - 1) / (n - 1), as by eigenvalues
    assert iso.isoscore_from_cov(half) == pytest.approx(7 / 15, abs=1e-15)
    assert iso.isoscore_from_cov(1e-300 * np.eye(3)) == pytest.approx(1.0)  # scale-free
    assert iso.isoscore_from_cov(1e300 * np.eye(3)) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "seed, n, d",
    [(20, 500, 7), (21, 2000, 30), (22, 300, 64), (23, 50, 10), (28, 10, 40), (29, 3, 300)],
)
def test_agrees_with_isoscore_package(seed: int, n: int, d: int) -> None:
    pkg = pytest.importorskip("IsoScore.IsoScore")
    rng = _rng(seed)
    X = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * rng.random(d)
    # the reference takes points as (num_samples, dimension)
    expected = float(pkg.IsoScore(X))
    assert iso.isoscore(X) == pytest.approx(expected, abs=1e-6)
    assert iso.report(X)["isoscore"] == pytest.approx(expected, abs=1e-6)


# ---------------------------------------------------------------- scale


def test_report_scales_to_100k_by_1024() -> None:
    rng = _rng(30)
    X = rng.random((100_000, 1024), dtype=np.float32)
    X[:, 7] = 2.0  # one dead dimension
    start = time.perf_counter()
    r = iso.report(X)
    elapsed = time.perf_counter() - start
    _assert_all_finite(r)
    # ~21 s on an idle 2-core machine; the bound leaves room for a loaded CI runner
    assert elapsed < 90.0
    assert r["dead_dims"] == 1.0
    assert r["isoscore"] > 0.95
    assert r["effective_rank"] > 0.95 * 1023
    assert r["partition_isotropy"] > 0.99
    # uniform [0, 1) rows: cos = E[x.y] / E[|x|^2] ~ (1/4) / (1/3) = 0.75 (plus the constant 2)
    assert 0.7 < r["avg_cosine"] < 0.8


# ---------------------------------------------------------------- few rows, many dimensions


def _brute_force_report(X: np.ndarray) -> dict[str, float]:
    """The D x D route, written out: numpy's covariance, corrcoef, eigh and partition sums."""
    n, d = X.shape
    centred = X - X.mean(0)
    cov = centred.T @ centred / n
    lam, vecs = np.linalg.eigh(cov)
    lam = np.clip(lam[::-1], 0.0, None)
    std = np.sqrt(np.diag(cov))
    alive = std > iso.DEAD_RTOL * std.max()
    corr = np.corrcoef(X[:, alive], rowvar=False)
    off = np.abs(corr[np.triu_indices(int(alive.sum()), 1)])
    w = centred / np.linalg.norm(centred, axis=1).mean()
    s = w @ vecs  # (N, D): c^T w_i for each eigenvector c
    log_z = np.log(np.concatenate([np.exp(s).sum(0), np.exp(-s).sum(0)]))
    p = lam[lam > 0] / lam.sum()
    return {
        "dead_dims": float((~alive).sum()),
        "mean_abs_corr": off.mean(),
        "frac_abs_corr_gt_0_5": (off > 0.5).mean(),
        "isoscore": iso.isoscore_from_eigvals(lam),
        "partition_isotropy": np.exp(log_z.min() - log_z.max()),
        "effective_rank": np.exp(-(p * np.log(p)).sum()),
        "top1_pc_share": lam[0] / lam.sum(),
        "top10_pc_share": lam[:10].sum() / lam.sum(),
    }


@pytest.mark.parametrize("n, d", [(3, 40), (9, 40), (30, 31)])
def test_gram_side_equals_the_covariance_side(n: int, d: int) -> None:
    """N < D uses the N x N Gram matrix; every measure equals the D x D route. The partition
    isotropy to 1e-7: the D x D route's null-space eigenvectors are null only to sqrt(eps)."""
    rng = _rng(n + d)
    X = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * rng.random(d) + 1.0
    X[:, 5] = -3.0  # a dead dimension
    expected = _brute_force_report(X)
    r = iso.report(X)
    _assert_all_finite(r)
    for key, value in expected.items():
        tol = 1e-7 if key == "partition_isotropy" else 1e-10
        assert r[key] == pytest.approx(value, rel=tol, abs=tol), key
    assert iso.isoscore(X) == pytest.approx(expected["isoscore"], abs=1e-12)
    assert iso.effective_rank(X) == pytest.approx(expected["effective_rank"], rel=1e-10)
    assert iso.partition_isotropy(X) == pytest.approx(expected["partition_isotropy"], rel=1e-7)


def test_report_on_few_rows_never_forms_a_d_by_d_matrix() -> None:
    """(3, 8000) once took 159 s and 3.2 GB: one 8000 x 8000 float64 matrix alone is 512 MB.
    The Gram side keeps the peak far below a single D x D matrix."""
    import tracemalloc

    X = _rng(31).standard_normal((3, 8000)).astype(np.float32)
    tracemalloc.start()
    try:
        r = iso.report(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, peak  # bytes; an (8000, 8000) float64 is 8 x this bound
    _assert_all_finite(r)
    assert r["n"] == 3.0 and r["d"] == 8000.0 and r["dead_dims"] == 0.0
    # three centred rows span two directions
    assert r["top10_pc_share"] == 1.0 and 1.0 < r["effective_rank"] <= 2.0
    assert 0.0 < r["isoscore"] < 2 / 8000
