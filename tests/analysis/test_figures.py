"""Figures: analysis figures on synthetic embeddings, training curves on tiny `isobn train` runs."""

import json

import numpy as np
import pytest

from isobn.analysis.figures import (
    analysis_figures,
    plot_spectra,
    plot_std_histograms,
    plot_training_curves,
)
from isobn.errors import UserError
from isobn.isotropy import report
from isobn.isotropy_stats import EmbeddingStats
from isobn.training.train import TrainConfig, train

PNG_HEADER = b"\x89PNG\r\n\x1a\n"


def assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_HEADER, f"{path} is not a PNG"
    assert len(data) > 5_000, f"{path} is only {len(data)} bytes"


def anisotropic(n: int, d: int, seed: int, dead: int = 0) -> np.ndarray:
    """Gaussian rows with a decaying spectrum, correlated dims and `dead` constant columns."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * np.geomspace(5.0, 0.1, d)
    X[:, d - dead :] = 3.0
    return X


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_bert, sentiment_files):
    root = tmp_path_factory.mktemp("runs")
    runs = []
    for norm, seed in (("isobn", 1), ("none", 2)):
        cfg = TrainConfig(
            out=str(root / f"{norm}-{seed}"),
            model=tiny_bert,
            train_file=sentiment_files["train"],
            dev_file=sentiment_files["dev"],
            pooling="cls",
            method=norm,
            epochs=1,
            eval_every_steps=3,  # 6 steps: evaluations at epoch 0.5 and 1
            batch_size=16,
            max_length=32,
            learning_rate=1e-3,
            seed=seed,
        )
        train(cfg)
        runs.append(root / f"{norm}-{seed}")
    return runs


def test_analysis_figures_for_several_embeddings(tmp_path):
    stats = [
        EmbeddingStats.from_embeddings(name, anisotropic(300, 80, seed, dead))
        for name, seed, dead in (("pre-trained", 0, 3), ("fine-tuned", 1, 0), ("IsoBN", 2, 0))
    ]
    layer_reports = {
        f"{model} {pooling}": [report(anisotropic(100, 16, layer)) for layer in range(4)]
        for model in ("pre-trained", "IsoBN")
        for pooling in ("cls", "mean")
    }
    written = analysis_figures(stats, layer_reports, tmp_path)
    assert set(written) == {"std", "correlation", "spectrum", "layers"}
    for path in written.values():
        assert path.parent == tmp_path
        assert_png(path)


def test_single_embedding_figures_and_dead_dims(tmp_path):
    s = EmbeddingStats.from_embeddings("cls", anisotropic(200, 70, 0, dead=5))
    assert s.dead == 5 and len(s.top_dims) == 64  # dead dims never enter the heatmap
    assert_png(plot_std_histograms([s], tmp_path / "std.png"))
    assert_png(plot_spectra([s], tmp_path / "spectrum.png"))
    assert not analysis_figures([s], {}, tmp_path / "sub").get("layers")


def test_training_curves_on_two_runs(tmp_path, two_runs):
    paths = plot_training_curves(two_runs, tmp_path / "figs")
    assert [p.name for p in paths] == ["learning_curves.png", "isotropy_curves.png"]
    for path in paths:
        assert_png(path)


def test_training_curves_skip_runs_without_evaluations(tmp_path, two_runs):
    empty = tmp_path / "empty-run"
    empty.mkdir()
    config = json.loads((two_runs[0] / "config.json").read_text())
    (empty / "config.json").write_text(json.dumps(config))
    (empty / "log.jsonl").write_text(json.dumps({"step": 1, "epoch": 0.5, "loss": 0.7}) + "\n")
    assert plot_training_curves([empty], tmp_path / "none") == []
    # an unfinished run (no metrics.json) still draws, with a guessed main metric
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.json", "log.jsonl"):
        (unfinished / name).write_text((two_runs[1] / name).read_text())
    paths = plot_training_curves([empty, unfinished], tmp_path / "figs")
    assert len(paths) == 2 and all(p.stat().st_size > 5_000 for p in paths)


def test_training_curves_need_run_directories(tmp_path):
    with pytest.raises(UserError, match="config.json not found"):
        plot_training_curves([tmp_path], tmp_path / "figs")
