"""Figures of a grid block: the dev median at every grid point (a heat-map) and the expected
best dev score against budget (isobn.study.tuning), one figure per task and size."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from isobn.study import stats, tuning
from isobn.study.figures import save_figure
from isobn.study.grid import point_text
from isobn.study.spec import Block
from isobn.study.tuning import by_point, score_range, trial_scores


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

    values = np.array(rows)  # (rows, points); NaN where a point has no finished cell
    with np.errstate(invalid="ignore"):
        best = np.nanmax(np.where(np.isnan(values), -np.inf, values), axis=1, keepdims=True)
    below = values - best  # <= 0: how far each point is below the row's best
    columns = [point_text(p).replace(",", "\n") for p in block.points]
    fig, ax = plt.subplots(
        figsize=(max(4.5, 1.5 * len(columns) + 2.5), 0.45 * len(rows) + 1.6), layout="constrained"
    )
    image = ax.imshow(np.ma.masked_invalid(below), cmap="viridis", aspect="auto")
    low = np.nanmin(below) if np.isfinite(below).any() else 0.0
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            if np.isfinite(value):
                dark = below[i, j] < low / 2  # the darker half of viridis: white text
                colour = "white" if dark else "black"
                ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=8, color=colour)
    for i, (label, picks) in enumerate(labels):
        method = label.rsplit(" ", 1)[1]
        if method in picks:
            j = block.points.index(picks[method])
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
    ax.set_xticks(range(len(columns)), columns, fontsize=8)
    ax.set_yticks(range(len(labels)), [label for label, _ in labels], fontsize=8)
    fig.colorbar(image, ax=ax, label="dev median minus the row's best")
    ax.set_title(
        f"Block {block.name}: dev median (x 100) per grid point; red: the tuned point",
        fontsize=10,
    )
    path = _folder(figures) / _name("sensitivity", block.name)
    save_figure(fig, path)
    return path


def budget_figure(block: Block, key: tuple, by_method: dict, figures: Path) -> Path:
    """Expected best dev score (solid, its band dotted where drawn) and expected test score of
    the dev-chosen trial (dashed) against the number of trials, one colour per method."""
    import matplotlib.pyplot as plt

    task, size = key
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    curves = []
    for index, method in enumerate(m for m in block.methods if m in by_method):
        trials = trial_scores(by_method[method])
        dev, test = trials["dev"], trials["test"]
        if not dev:
            continue
        ns = list(range(1, len(dev) + 1))
        colour = f"C{index}"
        curves.append([tuning.expected_best(dev, n) for n in ns])
        ax.plot(ns, curves[-1], color=colour, label=f"{method}: E[best dev]")
        if test:
            curves.append([tuning.expected_test_at_best(dev, test, n) for n in ns])
            ax.plot(ns, curves[-1], color=colour, ls="--", label=f"{method}: E[test at best dev]")
        band = tuning.expected_best_band(dev, ns, *score_range(by_method[method]))
        if band is not None:
            for bound in band:  # dotted: filled, two methods' bands would hide the curves
                ax.plot(ns, bound, color=colour, ls=":", lw=1)
    finite = np.array([v for curve in curves for v in curve if np.isfinite(v)])
    if finite.size:  # the curves decide the axis; a wide band runs off it
        pad = max(1.0, 0.5 * float(np.ptp(finite)))
        ax.set_ylim(finite.min() - pad, finite.max() + pad)
    ax.set_xlabel("trials n (grid points x seeds drawn at random)")
    ax.set_ylabel(f"score (x 100); dotted: {tuning.BAND_LEVEL:.0%} band of E[best dev]")
    ax.set_title(f"{task} n={size or 'full'}: expected best dev score against budget", fontsize=10)
    ax.legend(fontsize=7)
    path = _folder(figures) / _name("budget", block.name, task, f"n{size or 'full'}")
    save_figure(fig, path)
    return path
