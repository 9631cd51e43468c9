"""Every figure a person reads fits its canvas (no cut label or legend) and keeps a shape that
reads at page width: study figures from the committed offline records, analysis figures from
synthetic embeddings shaped like the demo's (pre-trained, fine-tuned, IsoBN before and after)."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from isobn.analysis import figures as analysis_figures
from isobn.isotropy import report
from isobn.isotropy_stats import EmbeddingStats
from isobn.study import figures as study_figures
from isobn.study.record import finished_cells

ROOT = Path(__file__).resolve().parents[1]
MAX_WIDTH_INCHES = 12.0  # wider ones are shrunk below legibility on a page
MAX_ASPECT = 3.0  # width / height: no strips of panels
SLACK = 0.02  # inches


def check_layout(fig) -> None:
    """Everything drawn lies inside the canvas; the size and shape read at page width."""
    canvas = FigureCanvasAgg(fig)  # pyplot's figures have one; analysis figures have none
    canvas.draw()
    drawn = fig.get_tightbbox(canvas.get_renderer())  # inches
    width, height = fig.get_size_inches()
    assert drawn.x0 >= -SLACK and drawn.y0 >= -SLACK, f"cut on the left/bottom: {drawn}"
    assert drawn.x1 <= width + SLACK and drawn.y1 <= height + SLACK, f"cut: {drawn}"
    assert width <= MAX_WIDTH_INCHES, f"{width:.1f} inches wide"
    assert width / height <= MAX_ASPECT, f"a {width:.1f} x {height:.1f} inch strip"
    for ax in fig.axes:
        if ax.get_visible() and ax.get_xlabel():
            label = ax.xaxis.label.get_window_extent().transformed(fig.dpi_scale_trans.inverted())
            assert label.x0 >= -SLACK and label.x1 <= width + SLACK, ax.get_xlabel()


@pytest.fixture
def checked(monkeypatch):
    """Every figure saved by the study's and the analysis' writers, checked before saving."""
    seen = []

    def wrap(module, name):
        original = getattr(module, name)

        def save(fig, path, *args, **kwargs):
            check_layout(fig)
            seen.append(Path(path).name)
            return original(fig, path, *args, **kwargs)

        monkeypatch.setattr(module, name, save)

    wrap(study_figures, "save_figure")
    wrap(analysis_figures, "_save")
    return seen


def test_study_figures_fit_and_read_at_page_width(tmp_path, checked):
    records = finished_cells(ROOT / "results" / "offline")
    assert len(records) > 100
    written = study_figures.study_figures(records, tmp_path / "figures")
    assert [p.name for p in written] == checked
    assert checked == ["paired_differences.png", "forest.png", "isotropy_vs_score.png"]


def test_study_scatter_gives_each_method_one_style_in_every_panel():
    styles = study_figures._method_styles(["none", "isobn", "whitening", "correg"])
    assert styles["none"] == ("black", "x")
    assert len(set(styles.values())) == 4


def _demo_like_stats() -> list[EmbeddingStats]:
    rng = np.random.default_rng(0)
    n, d = 400, 96
    labels = rng.integers(0, 2, n)[:, None] * 2 - 1
    pretrained = rng.normal(size=(n, d)) * rng.uniform(0.03, 0.045, d)
    fine_tuned = labels * rng.normal(size=d) + 0.05 * rng.normal(size=(n, d))
    before = labels * rng.normal(size=d) + 0.07 * rng.normal(size=(n, d))
    after = before * rng.uniform(0.5, 2.0, d)  # a per-dimension scale, as IsoBN's
    names = ["pre-trained", "fine-tuned", "IsoBN (before norm)", "IsoBN (after IsoBN)"]
    embeddings = [pretrained, fine_tuned, before, after]
    return [EmbeddingStats.from_embeddings(nm, X) for nm, X in zip(names, embeddings)]


@pytest.mark.parametrize("count", [1, 2, 4])
def test_analysis_figures_fit_and_read_at_page_width(tmp_path, checked, count):
    stats = _demo_like_stats()[:count]
    rng = np.random.default_rng(1)
    layer_reports = {
        f"{model} {pooling}": [
            report(rng.normal(size=(60, 16)) * (layer + 1)) for layer in range(7)
        ]
        for model in ("pre-trained", "fine-tuned")[: min(count, 2)]
        for pooling in ("cls", "mean")
    }
    written = analysis_figures.analysis_figures(stats, layer_reports, tmp_path)
    assert "layers" in written
    assert sorted(checked) == sorted(p.name for p in written.values())


def test_training_figures_give_every_method_its_own_colour():
    methods = ["none", "isobn", "whitening", "correg", "istar", "istar:weight=5.0", "none"]
    runs = [SimpleNamespace(method=m) for m in methods]
    colours = analysis_figures._method_colours(runs)
    assert list(colours) == list(dict.fromkeys(methods))
    assert len(set(colours.values())) == len(colours)  # none is grey, no other is black
    assert "black" not in colours.values() and colours["none"] == "#4d4d4d"


def test_correlation_legend_sits_below_the_panels_and_names_equal_distributions(monkeypatch):
    figures = []
    monkeypatch.setattr(analysis_figures, "_save", lambda fig, path: figures.append(fig))
    analysis_figures.plot_correlations(_demo_like_stats(), Path("unused.png"))
    fig = figures[0]
    (legend,) = fig.legends  # the figure's, not the histogram's own
    assert not any(ax.get_legend() for ax in fig.axes)
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts[3] == "IsoBN (after IsoBN): dashed, the same |ρ| as IsoBN (before norm)"
    assert all("same" not in t for t in texts[:3])
    hist_ax = fig.axes[-2]  # the colour bar is added last
    patches = [p for p in hist_ax.patches if p.get_label() == texts[3]]
    assert patches and patches[0].get_linestyle() != "-"
