"""Whitening's solvers against exact ZCA on real embeddings (deterministic; no timing).

The pooled embeddings (pooler, [CLS], mean of tokens) of the `mr` dev split by the packaged
MiniLM, as `isobn analyze` embeds texts; W = (Sigma + eps I)^{-1/2} of their population
covariance by an eigendecomposition (exact ZCA, `solver=eigh`) and by K Newton-Schulz steps
(`solver=newton`, default K = 20). For each: the relative error ||W - W_zca||_F / ||W_zca||_F,
and mean |rho| and IsoScore (isobn.isotropy.report) of (X - mean) W.

    .venv/bin/python benchmarks/whitening_accuracy.py [--max-eval N] [--eps 1e-3]
"""

from __future__ import annotations

import argparse

import common
import numpy as np
import torch

from isobn import isotropy
from isobn.methods.whitening import inverse_sqrt, inverse_sqrt_newton

STEPS = (5, 10, 15, 20)


def embeddings(max_eval: int | None) -> dict[str, np.ndarray]:
    """{pooling: (N, 384) float32} of the mr dev split by the packaged MiniLM."""
    from isobn.analysis.sources import embed, parse_model_spec
    from isobn.tasks import load_task

    task = load_task("mr", max_eval=max_eval, seed=0)
    dev = task.splits[task.dev_splits[0]]
    return embed(parse_model_spec("minilm"), dev, pooling="all").pooled


def rows(x: np.ndarray, eps: float) -> list[list[str]]:
    data = torch.from_numpy(x).double()
    centred = data - data.mean(0)
    cov = centred.T @ centred / len(centred)  # (D, D), population
    exact = inverse_sqrt(cov, eps)

    def row(name: str, matrix: torch.Tensor | None) -> list[str]:
        out = centred if matrix is None else centred @ matrix
        report = isotropy.report(out.numpy())
        error = "" if matrix is None else f"{float((matrix - exact).norm() / exact.norm()):.1e}"
        return [name, error, f"{report['mean_abs_corr']:.4f}", f"{report['isoscore']:.4f}"]

    table = [row("before (centred)", None), row("eigh (exact ZCA)", exact)]
    table += [row(f"newton, {k} steps", inverse_sqrt_newton(cov, eps, k)) for k in STEPS]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-eval", type=int, help="dev sentences (default: all 1,275)")
    parser.add_argument("--eps", type=float, default=1e-3, help="whitening eps (default 1e-3)")
    args = parser.parse_args()
    common.quiet()
    for pooling, x in embeddings(args.max_eval).items():
        common.header(f"mr dev, MiniLM {pooling}: {x.shape[0]} x {x.shape[1]}, eps {args.eps}")
        common.table(rows(x, args.eps), ["W", "rel. error vs ZCA", "mean |rho|", "IsoScore"])


if __name__ == "__main__":
    main()
