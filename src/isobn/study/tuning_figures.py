"""Figures of a grid block: the dev median at every grid point (a heat-map) and the expected
best dev score against budget (isobn.study.tuning), one figure per task and size."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from isobn.study import stats, tuning
from isobn.study.figures import save_figure
from isobn.study.spec import Block, point_text


def _folder(figures: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from isobn.training.safe_files import make_folder

    return make_folder(figures.parent, figures.name)  # never through a link planted in OUT


def _name(*parts) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", "-".join(str(p) for p in parts)) + ".png"


def sensitivity_figure(block: Block, records: list[dict], chosen, figures: Path) -> Path:
    """A heat-map of the dev median over seeds: one row per (task, size, method), one column
    per grid point, the tuned point boxed (`records`: at least one finished cell)."""
    from isobn.study.tuned import by_point

    rows, labels = [], []
    for (task, size), by_method in sorted(by_point(records).items(), key=lambda i: str(i[0])):
        for method in [m for m in block.methods if m in by_method]:
            row = []
            for point in block.points:
                dev = list(stats.scores(by_method[method].get(point, {}), "dev").values())
                row.append(float(np.median(dev)) if dev else np.nan)
            rows.append(row)
            labels.append((f"{task} n={size or 'full'} {method}", chosen.get((task, size), {})))
    import matplotlib.pyplot as plt

    values = np.array(rows)
    columns = [point_text(p).replace(",", "\n") for p in block.points]
    fig, ax = plt.subplots(
        figsize=(max(4.5, 1.5 * len(columns) + 2.5), 0.45 * len(rows) + 1.6), layout="constrained"
    )
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", aspect="auto")
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=8, color="w")
    for i, (label, picks) in enumerate(labels):
        method = label.rsplit(" ", 1)[1]
        if method in picks:
            j = block.points.index(picks[method])
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
    ax.set_xticks(range(len(columns)), columns, fontsize=8)
    ax.set_yticks(range(len(labels)), [label for label, _ in labels], fontsize=8)
    fig.colorbar(image, ax=ax, label="dev median (x 100)")
    ax.set_title(f"Block {block.name}: dev median per grid point (red: tuned)", fontsize=10)
    path = _folder(figures) / _name("sensitivity", block.name)
    save_figure(fig, path)
    return path


def budget_figure(block: Block, key: tuple, by_method: dict, figures: Path) -> Path:
    """Expected best dev score (solid, with its band where drawn) and expected test score of
    the dev-chosen trial (dashed) against the number of trials, one colour per method."""
    import matplotlib.pyplot as plt

    from isobn.study.tuned import score_range, trial_scores

    task, size = key
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for index, method in enumerate(m for m in block.methods if m in by_method):
        trials = trial_scores(by_method[method])
        dev, test = trials["dev"], trials["test"]
        if not dev:
            continue
        ns = list(range(1, len(dev) + 1))
        colour = f"C{index}"
        ax.plot(ns, [tuning.expected_best(dev, n) for n in ns], color=colour, label=method)
        if test:
            chosen = [tuning.expected_test_at_best(dev, test, n) for n in ns]
            ax.plot(ns, chosen, color=colour, ls="--", label=f"{method}: test at best dev")
        band = tuning.expected_best_band(dev, ns, *score_range(by_method[method]))
        if band is not None:
            ax.fill_between(ns, band[0], band[1], color=colour, alpha=0.15, lw=0)
    ax.set_xlabel("trials n (grid points x seeds drawn at random)")
    ax.set_ylabel("score (x 100)")
    ax.set_title(f"{task} n={size or 'full'}: expected best dev score against budget", fontsize=10)
    ax.legend(fontsize=7)
    path = _folder(figures) / _name("budget", block.name, task, f"n{size or 'full'}")
    save_figure(fig, path)
    return path
