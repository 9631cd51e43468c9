"""What the isotropy figures and reports need from one (N, D) embedding, computed once.

``EmbeddingStats.from_embeddings(name, X)`` keeps the ``isobn.isotropy.report`` of X and the
arrays behind it (per-dimension std, covariance eigenvalues, the correlations), so that
``isobn.figures`` can draw and ``isobn.analysis`` can describe an embedding without holding X.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isobn import isotropy

__all__ = ["TOP_DIMS", "EmbeddingStats"]

TOP_DIMS = 64  # correlation heatmap: the highest-variance dimensions


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
