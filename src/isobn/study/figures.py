"""Figures of a study: per-seed paired differences, a forest plot, isotropy against score."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from isobn.study import stats


def study_figures(records: list[dict], directory: Path) -> list[Path]:
    """Draw the study's figures into `directory`; returns their paths (none without pairs, or
    without matplotlib: isobn.analysis.figures.can_draw)."""
    from isobn.analysis.figures import can_draw

    if not can_draw():
        return []
    import matplotlib

    matplotlib.use("Agg")
    comparisons = _comparisons(records)
    if not comparisons:
        return []
    from isobn.training.safe_files import make_folder

    make_folder(directory.parent, directory.name)  # never through a link planted in OUT
    return [
        _paired_dots(comparisons, directory / "paired_differences.png"),
        _forest(comparisons, directory / "forest.png"),
        _isotropy_scatter(records, directory / "isotropy_vs_score.png"),
    ]


def _comparisons(records: list[dict]) -> list[tuple[str, dict]]:
    """(label, paired test result) for every (task, size, method != none) with pairs."""
    found = []
    for (task, size), by_method in sorted(
        stats.group(records).items(), key=lambda i: (i[0][0], i[0][1] or 10**9)
    ):
        base = by_method.get(stats.BASELINE)
        if base is None:
            continue
        for method, runs in sorted(by_method.items()):
            if method == stats.BASELINE:
                continue
            result = stats.paired(stats.scores(runs, "test"), stats.scores(base, "test"))
            if result:
                found.append((f"{task} n={size or 'full'} {method}", result))
    return found


def _paired_dots(comparisons, path: Path) -> Path:
    def draw(ax, row, result):
        jitter = np.linspace(-0.15, 0.15, len(result["diffs"]))
        ax.scatter(result["diffs"], row + jitter, s=14, alpha=0.7)
        ax.plot([result["mean_diff"]] * 2, [row - 0.3, row + 0.3], color="black")

    xlabel = "test score, method - none (x 100)\none dot per seed; bar: their mean"
    return _one_row_each(comparisons, path, draw, xlabel, "Per-seed paired differences")


def _forest(comparisons, path: Path) -> Path:
    def draw(ax, row, result):
        low, high = result["ci"] or (result["mean_diff"], result["mean_diff"])
        ax.plot([low, high], [row, row], color="tab:blue")
        ax.plot(result["mean_diff"], row, "o", color="tab:blue")

    xlabel = "mean test difference against none (x 100)\nwith its 95% bootstrap interval"
    return _one_row_each(comparisons, path, draw, xlabel, "Every method against no norm")


def _one_row_each(comparisons, path: Path, draw, xlabel: str, title: str) -> Path:
    """A figure with one labelled row per comparison, drawn by draw(ax, row, result)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.45 * len(comparisons) + 1.4), layout="constrained")
    for row, (_, result) in enumerate(comparisons):
        draw(ax, row, result)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(range(len(comparisons)), [label for label, _ in comparisons], fontsize=8)
    ax.invert_yaxis()  # the first comparison on top, as the tables read
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    save_figure(fig, path)
    return path


def _isotropy_scatter(records: list[dict], path: Path) -> Path:
    """Test score against IsoScore, a panel per (task, size) in rows of three; a method keeps
    its colour and marker in every panel, named once in a legend below."""
    import matplotlib.pyplot as plt

    groups = sorted(stats.group(records).items(), key=lambda i: (i[0][0], i[0][1] or 0))
    methods = sorted({method for _, by_method in groups for method in by_method})
    styles = _method_styles(methods)
    cols = min(len(groups), 3)
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.3 * cols, 2.7 * rows + 0.9), squeeze=False, layout="constrained"
    )
    for ax, ((task, size), by_method) in zip(axes.ravel(), groups):
        for method, runs in sorted(by_method.items()):
            points = [
                (r["isotropy_at_best"].get("after_norm", {}).get("isoscore"), r["test_score"])
                for r in runs.values()
            ]
            points = [p for p in points if None not in p]
            if points:
                x, y = zip(*points)
                colour, marker = styles[method]
                ax.scatter(x, y, s=14, label=method, alpha=0.75, color=colour, marker=marker)
        ax.set_title(f"{task} n={size or 'full'}", fontsize=9)
        ax.set_xlabel("IsoScore after the method", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(plt.MaxNLocator(nbins=4))
        ax.xaxis.get_offset_text().set_fontsize(7)
    for ax in axes[:, 0]:
        ax.set_ylabel("test score (x 100)", fontsize=8)
    for ax in axes.ravel()[len(groups) :]:
        ax.set_visible(False)
    _legend_below(fig, axes.ravel(), methods)
    save_figure(fig, path)
    return path


def _legend_below(fig, axes, methods: list[str]) -> None:
    """One legend for every panel, below them: each method drawn anywhere, once."""
    handles = {}
    for ax in axes:
        handles.update(zip(*reversed(ax.get_legend_handles_labels())))
    shown = [m for m in methods if m in handles]
    fig.legend(
        [handles[m] for m in shown],
        shown,
        loc="outside lower center",
        ncols=min(len(shown), 3),
        fontsize=7,
    )


def _method_styles(methods: list[str]) -> dict[str, tuple]:
    """(colour, marker) per method: no norm in black, the others in tab20's dark shades, then
    its light ones, with markers cycling so that neighbours differ in shape too."""
    import matplotlib.pyplot as plt

    palette = plt.get_cmap("tab20")
    shades = [palette(i) for i in range(0, 20, 2)] + [palette(i) for i in range(1, 20, 2)]
    others = [m for m in methods if m != stats.BASELINE]
    styles = {m: (shades[i % 20], "osD^vPX"[i % 7]) for i, m in enumerate(others)}
    styles[stats.BASELINE] = ("black", "x")
    return styles


def save_figure(fig, path: Path) -> None:
    """Save `fig` as the PNG `path` (a new file swapped in) and close it."""
    import matplotlib.pyplot as plt

    from isobn.training.safe_files import replaced_atomically

    try:
        with replaced_atomically(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)  # also on a full disk: a study's figures are many
