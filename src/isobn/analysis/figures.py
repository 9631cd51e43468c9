"""PNG figures of embedding isotropy (``isobn analyze``) and of training runs (``isobn report``).

Figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas, never through
pyplot: no global backend or figure state is touched, so the functions are safe to call from
a library, a test or a headless server. Every function writes PNG files and returns their
paths.

Analysis figures (inputs: ``isobn.isotropy_stats.EmbeddingStats``, one per embedding):
    plot_std_histograms   per-dimension std, one panel per embedding, dead dims annotated
    plot_correlations     heatmap of rho over the highest-variance dims (one per embedding)
                          and the distribution of off-diagonal abs(rho) (overlaid)
    plot_spectra          covariance eigenvalues as variance shares (log scale) and their
                          cumulative share on a twin axis (overlaid)
    plot_layers           isotropy measures by layer (one line per model and pooling)

Training figures (inputs: ``isobn train`` run directories):
    plot_training_curves  learning curves and isotropy curves per task, coloured by norm
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from isobn.training.runs import Run, read_run
from isobn.training.safe_files import replaced_atomically

if TYPE_CHECKING:  # pragma: no cover
    from isobn.isotropy_stats import EmbeddingStats

__all__ = [
    "analysis_figures",
    "plot_correlations",
    "plot_layers",
    "plot_spectra",
    "plot_std_histograms",
    "plot_training_curves",
]

logger = logging.getLogger(__name__)


def can_draw() -> bool:
    """Whether matplotlib is installed. It is a dependency of isobn, but absent where isobn
    runs from its source on a bare machine (the GPU check's): commands then write their
    tables and skip the figures, with this one warning."""
    if importlib.util.find_spec("matplotlib") is not None:
        return True
    logger.warning("matplotlib is not installed: no figures (pip install matplotlib)")
    return False


DPI = 130
PANEL = (4.6, 3.6)  # inches per panel: legible at 100% zoom
MAX_COLUMNS = 3
MIN_WIDTH = 7.5  # inches
SPECTRUM_FLOOR = 1e-10  # shares below it are round-off: the log axis stops there
NORM_COLOURS = {  # stable across figures and runs
    "none": "#4d4d4d",
    "isobn": "#d62728",
    "isobn:bias_correction=false": "#ff7f0e",
    "batchnorm": "#1f77b4",
    "layernorm": "#2ca02c",
}
OTHER_COLOURS = (  # the other methods: distinct from NORM_COLOURS and from each other
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#393b79",
    "#637939",
    "#7b4173",
)
LAYER_METRICS = (
    ("isoscore", "IsoScore (1 = isotropic)"),
    ("avg_cosine", "average cosine similarity"),
    ("std_cv", "CV of per-dimension std"),
    ("mean_abs_corr", "mean |ρ| between dims"),
    ("effective_rank", "effective rank (dims)"),
    ("top1_pc_share", "top-1 PC variance share"),
)
SIDE_STYLES = {  # training isotropy curves: before / after the norm
    "before_norm": {"linestyle": "-", "marker": "o"},
    "after_norm": {"linestyle": "--", "marker": "s", "markerfacecolor": "none"},
}
TRAINING_ISOTROPY_METRICS = (
    ("isoscore", "IsoScore (1 = isotropic)"),
    ("std_cv", "CV of per-dimension std"),
)


def _figure(rows: int, cols: int, width: float | None = None, height: float | None = None):
    from matplotlib.figure import Figure

    # at least MIN_WIDTH: room for the suptitle and a legend below the panels
    size = (max(width or PANEL[0] * cols, MIN_WIDTH), height or PANEL[1] * rows)
    return Figure(figsize=size, dpi=DPI, layout="constrained")


def _method_colours(runs: list[Run]) -> dict[str, str]:
    """A colour per method of the runs, in order of appearance: the common norms' own
    (NORM_COLOURS), the others OTHER_COLOURS in name order (never black, distinct up to 8)."""
    methods = list(dict.fromkeys(r.method for r in runs))
    others = sorted(m for m in methods if m not in NORM_COLOURS)
    colours = {m: OTHER_COLOURS[i % len(OTHER_COLOURS)] for i, m in enumerate(others)}
    return {m: NORM_COLOURS.get(m) or colours[m] for m in methods}


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _grid(n: int) -> tuple[int, int]:
    cols = 2 if n == 4 else min(n, MAX_COLUMNS)  # four panels: a square, no empty slots
    return math.ceil(n / cols), cols


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(path) as tmp:  # a new file, never through a link
        fig.savefig(tmp, dpi=DPI, format=path.suffix.lstrip(".") or "png")
    return path


# --------------------------------------------------------------------------------------------
# Analysis figures


def plot_std_histograms(stats: Sequence[EmbeddingStats], path: Path) -> Path:
    """Histogram of the per-dimension std, one panel per embedding (own x scale each).

    Dead dimensions (std ~ 0) are drawn as a red bar at 0 and counted in the panel; the dashed
    line is the mean std. Panels share no axis because norms change the scale.
    """
    rows, cols = _grid(len(stats))
    fig = _figure(rows, cols)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, s, colour in zip(axes, stats, _colours(len(stats))):
        dead = s.dead
        alive_std = np.sort(s.std)[dead:]  # dead dims have the smallest std
        ax.hist(alive_std, bins=40, color=colour, alpha=0.85, label="dimensions")
        ax.axvline(s.report["std_mean"], color="black", linestyle="--", linewidth=1)
        if dead:
            ax.bar([0.0], [dead], width=0.02 * float(s.std.max()), color="red", label="dead")
        dead_text = f", {dead} dead (red bar at 0)" if dead else ", no dead dims"
        ax.set_title(
            f"{s.name}\nD = {len(s.std)}, CV = {s.report['std_cv']:.2f}{dead_text}", fontsize=10
        )
        ax.set_xlabel("per-dimension std (embedding units)")
        ax.set_ylabel("number of dimensions")
        ax.set_xlim(left=0.0)
        ax.yaxis.get_major_locator().set_params(integer=True)
    for ax in axes[len(stats) :]:
        ax.set_visible(False)
    fig.suptitle("Distribution of the per-dimension standard deviation (dashed: mean std)")
    return _save(fig, path)


def plot_correlations(stats: Sequence[EmbeddingStats], path: Path) -> Path:
    """Correlation heatmap of the highest-variance dims per embedding, and the distribution
    of the off-diagonal abs(rho) among all non-dead dims (one line per embedding)."""
    n = len(stats)
    heat_rows, cols = _grid(n)
    if n == 1:
        fig = _figure(1, 2, width=2 * PANEL[0] + 1.2)
        fig.get_layout_engine().set(wspace=0.08)
        heat_axes = [fig.add_subplot(1, 2, 1)]
        hist_ax = fig.add_subplot(1, 2, 2)
    else:
        fig = _figure(heat_rows + 1, cols, width=PANEL[0] * cols + 0.6)
        grid = fig.add_gridspec(heat_rows + 1, cols)
        heat_axes = [fig.add_subplot(grid[i // cols, i % cols]) for i in range(n)]
        hist_ax = fig.add_subplot(grid[heat_rows, :])
    image = None
    for ax, s in zip(heat_axes, stats):
        k = len(s.top_dims)
        image = ax.imshow(s.top_corr, vmin=-1.0, vmax=1.0, cmap="RdBu_r", interpolation="nearest")
        ax.set_title(s.name, fontsize=10)
        ax.set_xlabel(f"dimension, by std rank (top {k})")
        ax.set_ylabel(f"dimension, by std rank (top {k})")
        ticks = [t for t in (0, 15, 31, 47, 63) if t < k]
        ax.set_xticks(ticks, [str(t + 1) for t in ticks])
        ax.set_yticks(ticks, [str(t + 1) for t in ticks])
    if image is not None:
        fig.colorbar(image, ax=heat_axes, shrink=0.9, label="Pearson correlation ρ")
    _abs_corr_histograms(hist_ax, stats)
    # below the panels, never over a histogram's peak (near 1 after fine-tuning)
    fig.legend(
        *hist_ax.get_legend_handles_labels(),
        loc="outside lower center",
        ncols=min(n, 2),
        fontsize=8,
    )
    fig.suptitle("Correlation between embedding dimensions")
    return _save(fig, path)


def _abs_corr_histograms(ax, stats: Sequence[EmbeddingStats]) -> None:
    """One step histogram of the off-diagonal abs(rho) per embedding. An embedding whose
    abs(rho) equal an earlier one's (a per-dimension rescaling such as IsoBN keeps every
    rho) is drawn dashed over it and says so in its label."""
    bins = np.linspace(0.0, 1.0, 41)
    drawn: list[EmbeddingStats] = []
    for s, colour in zip(stats, _colours(len(stats))):
        if not s.abs_corr.size:
            continue
        same = next((d for d in drawn if _same_values(d.abs_corr, s.abs_corr)), None)
        label = f"{s.name} (mean {float(s.abs_corr.mean()):.2f})"
        if same is not None:
            label = f"{s.name}: dashed, the same |ρ| as {same.name}"
        ax.hist(
            s.abs_corr,
            bins=bins,
            density=True,
            histtype="step",
            linewidth=1.6 if same is None else 1.4,
            linestyle="-" if same is None else (0, (4, 3)),
            color=colour,
            label=label,
        )
        drawn.append(s)
    ax.set_xlim(0.0, 1.0)
    ax.set_yscale("log")
    ax.set_xlabel("|ρ| between two dimensions (all off-diagonal pairs)")
    ax.set_ylabel("density (log scale)")
    ax.set_title("Distribution of |ρ|", fontsize=10)


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=0.0, atol=1e-5))


def plot_spectra(stats: Sequence[EmbeddingStats], path: Path) -> Path:
    """Eigenvalues of the covariance divided by their sum (log scale, solid) and the
    cumulative variance share (twin axis, dashed), one colour per embedding."""
    fig = _figure(1, 1, width=8.0, height=4.8)
    ax = fig.add_subplot(1, 1, 1)
    twin = ax.twinx()
    smallest = 1.0
    for s, colour in zip(stats, _colours(len(stats))):
        total = float(s.eigvals.sum())
        if total <= 0.0:
            continue
        share = s.eigvals / total
        k = np.arange(1, len(share) + 1)
        positive = share > 0.0
        ax.plot(k[positive], share[positive], color=colour, linewidth=1.6, label=s.name)
        if positive.any():
            smallest = min(smallest, float(share[positive].min()))
        twin.plot(k, 100 * np.cumsum(share), color=colour, linewidth=1.2, linestyle="--")
    ax.set_yscale("log")
    ax.set_xlabel("principal component (sorted by variance)")
    ax.set_ylabel("eigenvalue / total variance (log scale)")
    twin.set_ylabel("cumulative variance share, % (dashed)")
    twin.set_ylim(0.0, 102.0)
    # eigenvalues below 1e-10 of the total are round-off: they would only stretch the axis
    ax.set_ylim(bottom=0.5 * max(smallest, SPECTRUM_FLOOR))
    ax.set_xlim(left=0.0)
    handles, labels = ax.get_legend_handles_labels()  # below the axes, over no curve
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 2), fontsize=8)
    ax.set_title("Covariance eigenvalue spectrum (solid) and cumulative share (dashed)")
    return _save(fig, path)


def plot_layers(layer_reports: dict[str, list[dict[str, float]]], path: Path) -> Path:
    """Isotropy measures by layer (0 = embedding layer), one line per model and pooling."""
    rows, cols = _grid(len(LAYER_METRICS))
    fig = _figure(rows, cols, width=3.6 * cols)  # three narrower panels: legible at page width
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    styles = {"cls": "-", "mean": "--"}
    parts = {series: _split_series(series, styles) for series in layer_reports}
    groups = list(dict.fromkeys(model for model, _ in parts.values()))
    if groups == [""]:  # one model: a colour per pooling
        groups = list(layer_reports)
    colours = dict(zip(groups, _colours(len(groups))))
    for ax, (key, title) in zip(axes, LAYER_METRICS):
        for series, reports in layer_reports.items():
            model, pooling = parts[series]
            colour = colours[model or series]
            ax.plot(
                range(len(reports)),
                [r[key] for r in reports],
                marker="o",
                markersize=3,
                color=colour,
                linestyle=styles.get(pooling, "-"),
                label=series,
            )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("layer (0 = embedding layer)")
        ax.set_ylabel(title.split(" (")[0])
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize=9)
    fig.suptitle("Isotropy of the [CLS] token and of the mean of tokens, by layer")
    return _save(fig, path)


def _split_series(series: str, poolings) -> tuple[str, str]:
    """("model label", "pooling") of a layer series named "pooling" or "label pooling"."""
    for pooling in poolings:
        if series == pooling:
            return "", pooling
        if series.endswith(" " + pooling):
            return series[: -len(pooling) - 1], pooling
    return series, ""


def analysis_figures(
    stats: Sequence[EmbeddingStats],
    layer_reports: dict[str, list[dict[str, float]]],
    out_dir: Path,
) -> dict[str, Path]:
    """All analysis figures in ``out_dir``: keys std, correlation, spectrum (and layers)."""
    out_dir = Path(out_dir)
    written = {
        "std": plot_std_histograms(stats, out_dir / "std_histogram.png"),
        "correlation": plot_correlations(stats, out_dir / "correlation.png"),
        "spectrum": plot_spectra(stats, out_dir / "spectrum.png"),
    }
    if layer_reports:
        written["layers"] = plot_layers(layer_reports, out_dir / "layers.png")
    return written


# --------------------------------------------------------------------------------------------
# Training curves


def _main_metrics(runs: list[Run]) -> dict[str, str]:
    """Main metric per task: from metrics.json of any run of the task, else guessed."""
    found: dict[str, str] = {}
    for run in runs:
        if run.main_metric:
            found.setdefault(run.task, run.main_metric)
    for run in runs:
        if run.task not in found:
            keys = list(run.evaluations[0]["dev"])
            guess = "accuracy" if "accuracy" in keys else keys[0]
            logger.warning(
                "no metrics.json for task %s yet: plotting dev %s", run.task, guess
            )  # unfinished runs
            found[run.task] = guess
    return found


def _norm_legend(fig, colours: dict[str, str], extra: Sequence = ()) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=colour, marker="o", label=f"norm: {n}")
        for n, colour in colours.items()
    ]
    handles += list(extra)
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3))


def _pad_single_epoch(ax) -> None:
    """One evaluation epoch only (all points at one x): a readable x range around it."""
    xs = [x for line in ax.get_lines() for x in line.get_xdata()]
    if xs and min(xs) == max(xs):
        ax.set_xlim(xs[0] - 0.5, xs[0] + 0.5)


def plot_training_curves(run_dirs: list[Path], out_dir: Path) -> list[Path]:
    """Learning curves and isotropy curves of ``isobn train`` runs; returns the PNG paths.

    Reads each run's config.json (task, method, seed), metrics.json (main_metric) and log.jsonl
    (evaluation lines) with isobn.training.runs. Writes into ``out_dir``:

    * ``learning_curves.png``: dev main metric per evaluation epoch, one panel per task, one
      line per run (seed), coloured by norm;
    * ``isotropy_curves.png``: IsoScore and the CV of the per-dimension std of the dev pooled
      embedding per evaluation epoch (rows: metric, columns: task); solid before the norm,
      dashed after it (not drawn for norm ``none``, where they are the same).

    Runs without any evaluation yet are skipped with a warning; with none left, nothing is
    written and ``[]`` is returned.
    """
    out_dir = Path(out_dir)
    runs = []
    for run_dir in run_dirs:
        run = read_run(Path(run_dir))
        if run.evaluations:
            runs.append(run)
        else:
            logger.warning("%s has no evaluation in log.jsonl yet: skipped", run_dir)
    if not runs:
        return []
    runs.sort(key=lambda r: (r.task, r.method, r.seed))
    return [
        _save(_learning_curves(runs), out_dir / "learning_curves.png"),
        _save(_isotropy_curves(runs), out_dir / "isotropy_curves.png"),
    ]


def _learning_curves(runs: list[Run]):
    """Dev main metric per evaluation epoch: a panel per task, a line per run."""
    tasks = list(dict.fromkeys(r.task for r in runs))
    colours = _method_colours(runs)
    main = _main_metrics(runs)
    rows, cols = _grid(len(tasks))
    fig = _figure(rows, cols)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, task in zip(axes, tasks):
        metric = main[task]
        seeds = 0
        for run in (r for r in runs if r.task == task):
            points = [(e["epoch"], e["dev"][metric]) for e in run.evaluations if metric in e["dev"]]
            if not points:
                continue
            seeds += 1
            x, y = zip(*points)
            ax.plot(
                x,
                y,
                color=colours[run.method],
                marker="o",
                alpha=0.8,
                linewidth=1.2,
            )
        ax.set_title(f"{task} ({seeds} runs)", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"dev {metric}")
        _pad_single_epoch(ax)
    for ax in axes[len(tasks) :]:
        ax.set_visible(False)
    _norm_legend(fig, colours)
    fig.suptitle("Dev main metric per evaluation (a line per run)")
    return fig


def _isotropy_curves(runs: list[Run]):
    """IsoScore and CV of std per evaluation epoch: rows metric, columns task; solid before
    the norm, dashed after it (no dashed line without a norm: there after is before)."""
    from matplotlib.lines import Line2D

    tasks = list(dict.fromkeys(r.task for r in runs))
    colours = _method_colours(runs)
    metrics = TRAINING_ISOTROPY_METRICS
    fig = _figure(len(metrics), len(tasks))
    axes = fig.subplots(len(metrics), len(tasks), squeeze=False)
    for j, task in enumerate(tasks):
        for i, (key, title) in enumerate(metrics):
            ax = axes[i, j]
            for run in (r for r in runs if r.task == task):
                colour = colours[run.method]
                identity = run.transform == "identity"  # after = before: one line
                sides = ["before_norm"] if identity else ["before_norm", "after_norm"]
                for side in sides:
                    points = [
                        (e["epoch"], e["isotropy"][side][key])
                        for e in run.evaluations
                        if key in e.get("isotropy", {}).get(side, {})
                    ]
                    if points:
                        x, y = zip(*points)
                        ax.plot(x, y, color=colour, alpha=0.8, **SIDE_STYLES[side])
            ax.set_title(f"{task}: {title}", fontsize=10)
            ax.set_xlabel("epoch")
            ax.set_ylabel(title.split(" (")[0])
            _pad_single_epoch(ax)
    styles = [
        Line2D([], [], color="black", label="before the norm", **SIDE_STYLES["before_norm"]),
        Line2D([], [], color="black", label="after the norm", **SIDE_STYLES["after_norm"]),
    ]
    _norm_legend(fig, colours, styles)
    fig.suptitle("Isotropy of the dev pooled embedding per evaluation")
    return fig
