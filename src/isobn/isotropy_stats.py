"""What the isotropy figures and reports need from one (N, D) embedding, computed once.

``EmbeddingStats.from_embeddings(name, X)`` keeps the ``isobn.isotropy.report`` of X and the
arrays behind it (per-dimension std, covariance eigenvalues, the correlations), so that
``isobn.analysis.figures`` can draw and ``isobn.analysis`` can describe an embedding without
holding X.
``before_after`` words the change a method's transform makes to a few of those statistics
(training's log and ``isobn analyze``'s report use it alike).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isobn import isotropy

__all__ = [
    "TOP_DIMS",
    "TRANSFORM_METRICS",
    "EmbeddingStats",
    "before_after",
    "describe_transform",
]

TOP_DIMS = 64  # correlation heatmap: the highest-variance dimensions
# isotropy.report keys shown before and after a method's transform, with their short names
TRANSFORM_METRICS = {
    "isoscore": "IsoScore",
    "std_cv": "CV of std",
    "mean_abs_corr": "mean |rho|",
    "effective_rank": "effective rank",
}


@dataclass
class EmbeddingStats:
    """Summary of one (N, D) embedding.

    All moments are population moments (see isobn.isotropy); correlations are among the
    non-dead dimensions. ``top_dims`` are the ``TOP_DIMS`` highest-std dimensions in
    decreasing std, and ``top_corr`` their correlation matrix.
    """

    name: str  # column / legend label
    report: dict[str, float]
    std: np.ndarray  # (D,)
    eigvals: np.ndarray  # (D,) covariance eigenvalues, descending
    top_dims: np.ndarray  # (k,) indices
    top_corr: np.ndarray  # (k, k)
    abs_corr: np.ndarray  # (A (A - 1) / 2,) off-diagonal |rho| of the A alive dims

    @classmethod
    def from_embeddings(cls, name: str, X: np.ndarray, top: int = TOP_DIMS) -> EmbeddingStats:
        """Statistics of X (N, D); ``top`` dimensions enter the correlation heatmap."""
        cov = isotropy.covariance(X)  # (D, D)
        std = isotropy.per_dim_std(cov)
        alive = ~isotropy.dead_dims_mask(std)
        corr = isotropy.correlation_from_cov(cov, alive)  # (A, A)
        abs_corr = np.abs(corr[np.triu_indices(corr.shape[0], k=1)])
        order = np.argsort(-std, kind="stable")
        top_dims = order[alive[order]][:top]
        top_corr = isotropy.correlation_from_cov(cov[np.ix_(top_dims, top_dims)])
        return cls(
            name=name,
            report=isotropy.report(X),
            std=std,
            eigvals=isotropy.covariance_eigvals(cov),
            top_dims=top_dims,
            top_corr=top_corr,
            abs_corr=abs_corr,
        )

    @property
    def dead(self) -> int:
        return int(self.report["dead_dims"])

    def dims_for_half_variance(self) -> int:
        """Fewest dimensions whose variances (std^2) sum to half the total variance."""
        var = np.sort(self.std**2)[::-1]
        total = float(var.sum())
        if total <= 0.0:
            return 0
        return int(np.searchsorted(np.cumsum(var) / total, 0.5) + 1)

    def components_for_share(self, share: float) -> int:
        """Fewest principal components whose variance share reaches ``share``."""
        total = float(self.eigvals.sum())
        if total <= 0.0:
            return 0
        cumulative = np.cumsum(self.eigvals) / total
        return int(min(np.searchsorted(cumulative, share - 1e-12) + 1, len(cumulative)))


def before_after(
    before: dict[str, float], after: dict[str, float] | None, arrow: str = "->"
) -> dict[str, str]:
    """TRANSFORM_METRICS key -> "before -> after" (3 decimals, effective rank 1) of two
    isotropy.report dicts; only "before" when ``after`` is None (an identity transform, whose
    output is its input). A key missing from either report is left out."""
    cells = {}
    for key in TRANSFORM_METRICS:
        if key not in before or (after is not None and key not in after):
            continue
        fmt = "{:.1f}" if key == "effective_rank" else "{:.3f}"
        text = fmt.format(before[key])
        cells[key] = text if after is None else f"{text} {arrow} {fmt.format(after[key])}"
    return cells


def describe_transform(
    method: str | None, transform: str, before: dict[str, float], after: dict[str, float]
) -> str:
    """One line on the isotropy before and after a method's transform, e.g. "isotropy (method
    whitening), before -> after whitening: IsoScore 0.094 -> 0.310, ..."; for the identity
    one value per statistic, and it says that the classifier input is the pooled embedding."""
    identity = transform == "identity"
    cells = before_after(before, None if identity else after)
    values = ", ".join(f"{TRANSFORM_METRICS[key]} {text}" for key, text in cells.items())
    name = f"method {method}" if method else f"norm {transform}"
    if identity:
        return (
            f"isotropy ({name}; transform: identity, the classifier input is the pooled "
            f"embedding): {values}"
        )
    return f"isotropy ({name}), before -> after {transform}: {values}"
