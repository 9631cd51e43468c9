"""Isotropy before and after each method's transform, measured: in the training log and in
`isobn analyze`, labelled by the method's canonical spec; the identity for methods without a
norm; logs of earlier versions still read."""

import json

import numpy as np
import pytest
from conftest import sentiment_rows, write_csv, write_tiny_bert

from isobn.analysis import ModelEmbeddings, ModelSource, write_analysis
from isobn.analysis.config import AnalysisConfig
from isobn.cli.main import main
from isobn.isotropy_stats import before_after, describe_transform
from isobn.methods import parse_method
from isobn.training.runs import read_run
from isobn.training.train import TrainConfig, train

# whitening with a cumulative average and an eps far below the tiny BERT's per-dim variance
# (~1e-5): with the default eps = 1e-3 it would only rescale such small embeddings
WHITENING = "whitening:eps=1e-10,momentum=none"


@pytest.fixture(scope="module")
def still_bert(tmp_path_factory) -> str:
    """The tiny BERT without dropout: the whitening's running statistics (taken in training
    mode) are then those of the embedding it whitens in eval mode."""
    directory = write_tiny_bert(tmp_path_factory.mktemp("still-bert"))
    config = json.loads((directory / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (directory / "config.json").write_text(json.dumps(config))
    return str(directory)


@pytest.fixture(scope="module")
def wide_files(tmp_path_factory) -> dict[str, str]:
    """256 rows each: enough for |rho| near 0 to be measurable in 32 dims."""
    d = tmp_path_factory.mktemp("wide")
    return {
        "train": write_csv(d / "train.csv", sentiment_rows(256, 0)),
        "dev": write_csv(d / "dev.csv", sentiment_rows(256, 1)),
    }


def _train(out, model, files, method, learning_rate=1e-5):
    cfg = TrainConfig(
        out=str(out),
        model=model,
        train_file=files["train"],
        dev_file=files["dev"],
        pooling="cls",
        method=method,
        epochs=1,
        batch_size=32,
        max_length=32,
        learning_rate=learning_rate,
    )
    train(cfg)
    return out


@pytest.fixture(scope="module")
def whitening_run(tmp_path_factory, still_bert, wide_files):
    return _train(tmp_path_factory.mktemp("runs") / "white", still_bert, wide_files, WHITENING)


@pytest.fixture(scope="module")
def correg_run(tmp_path_factory, tiny_bert, sentiment_files):
    out = tmp_path_factory.mktemp("runs") / "reg"
    return _train(out, tiny_bert, sentiment_files, "correg:weight=0.5", learning_rate=1e-3)


def _analyze(out, files, *models) -> tuple[dict, str, str]:
    args = ["analyze", "--compare", *models, "--train", files["train"], "--dev", files["dev"]]
    rc = main([*args, "--split", "dev", "--max-examples", "0", "--out", str(out)])
    assert rc == 0
    return json.loads((out / "isotropy.json").read_text()), (out / "report.md").read_text()


def test_whitening_run_log_measures_the_decorrelation(whitening_run):
    run = read_run(whitening_run)
    assert run.transform == WHITENING
    (entry,) = run.evaluations
    assert entry["method"] == entry["transform"] == WHITENING
    before, after = entry["isotropy"]["before_norm"], entry["isotropy"]["after_norm"]
    assert before["n"] == after["n"] == 256
    assert before["mean_abs_corr"] > 0.2  # the tiny BERT's [CLS] dims are correlated
    assert after["mean_abs_corr"] < 0.4 * before["mean_abs_corr"]
    assert after["isoscore"] > 2 * before["isoscore"]


def test_analyze_whitening_run_before_and_after(tmp_path, whitening_run, wide_files, capsys):
    payload, report = _analyze(tmp_path / "an", wide_files, f"w={whitening_run}")
    printed = capsys.readouterr().out
    (m,) = payload["models"]
    assert m["method"] == m["transform"] == WHITENING and m["norm"] == "whitening"
    assert (m["before"], m["after"]) == ("cls", "cls (after whitening)")
    before, after = m["reports"][m["before"]], m["reports"][m["after"]]
    assert after["mean_abs_corr"] < 0.4 * before["mean_abs_corr"]
    # the same 256 dev rows and weights as the training log's last evaluation
    logged = read_run(whitening_run).evaluations[-1]["isotropy"]
    for key in ("mean_abs_corr", "isoscore", "std_cv", "effective_rank"):
        assert before[key] == pytest.approx(logged["before_norm"][key], rel=1e-3, abs=1e-4)
        assert after[key] == pytest.approx(logged["after_norm"][key], rel=1e-3, abs=1e-4)
    assert payload["columns"] == ["cls (before norm)", f"cls (after {WHITENING})"]
    assert "## Before and after each method's transform" in report
    assert f"| w | `{WHITENING}` | `{WHITENING}` | " in report
    assert f"w: isotropy (method {WHITENING}), before -> after {WHITENING}: IsoScore" in printed


def test_correg_run_reports_the_identity(tmp_path, correg_run, sentiment_files, capsys):
    (entry,) = read_run(correg_run).evaluations
    assert entry["method"] == "correg:weight=0.5" and entry["transform"] == "identity"
    assert entry["isotropy"]["after_norm"] == entry["isotropy"]["before_norm"]
    payload, report = _analyze(tmp_path / "an", sentiment_files, f"reg={correg_run}")
    printed = capsys.readouterr().out
    (m,) = payload["models"]
    assert m["method"] == "correg:weight=0.5" and m["transform"] == "identity"
    assert m["norm"] is None and m["before"] == m["after"] == "cls"
    assert set(m["reports"]) == {"cls"} and payload["columns"] == ["cls"]  # no second column
    assert "| reg | `correg:weight=0.5` | identity (after = before) | " in report
    assert "regularisers change the embedding only through training" in report
    assert "reg: isotropy (method correg:weight=0.5; transform: identity" in printed


def test_old_format_run_reads_with_its_transform(tmp_path):
    """A run directory of an earlier version: `norm` in config.json, evaluation lines without
    "method" / "transform"; an identity method draws one isotropy line, a norm two."""
    from isobn.analysis import figures

    report = {"isoscore": 0.2, "std_cv": 0.3, "mean_abs_corr": 0.25, "effective_rank": 9.0}
    runs = []
    for name, config in (("old", {"norm": "isobn-legacy"}), ("reg", {"method": "correg"})):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"task": "mr", "seed": 0, **config}))
        iso = {"before_norm": report, "after_norm": {**report, "isoscore": 0.3}}
        lines = [{"step": 2, "loss": 0.7}, {"step": 4, "epoch": 1, "dev": {}, "isotropy": iso}]
        (d / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
        runs.append(read_run(d))
    old, reg = runs
    assert old.transform == "isobn:bias_correction=false" and old.method == old.transform
    assert reg.transform == "identity"
    assert old.evaluations[0]["isotropy"]["after_norm"]["isoscore"] == 0.3
    fig = figures._isotropy_curves(runs)
    assert [len(ax.lines) for ax in fig.axes[:1]] == [3]  # old: before and after; reg: before


def test_before_after_words():
    before = {"isoscore": 0.1, "std_cv": 0.2, "mean_abs_corr": 0.3, "effective_rank": 9.04}
    after = {"isoscore": 0.9, "std_cv": 0.05, "mean_abs_corr": 0.01, "effective_rank": 30.0}
    assert before_after(before, after)["effective_rank"] == "9.0 -> 30.0"
    assert before_after(before, None)["mean_abs_corr"] == "0.300"
    line = describe_transform("isobn+correg", "isobn", before, after)
    assert line.startswith("isotropy (method isobn+correg), before -> after isobn: IsoScore")
    assert "mean |rho| 0.300 -> 0.010" in line
    assert "identity" in describe_transform("istar", "identity", before, before)
    for spec, transform in [("none", "identity"), ("istar:weight=-5,zeta=0.2", "identity")]:
        assert parse_method(spec).transform == transform
    assert parse_method("isobn:beta=0.25+correg").transform == "isobn:beta=0.25"


def test_hand_built_embeddings_keep_their_columns(tmp_path, tiny_bert):
    """Embeddings built without a method (as the demo's pre-trained one) keep the columns and
    reports they had; a norm without a method still gets its before/after row."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6)).astype(np.float32)
    pre = ModelEmbeddings(ModelSource("pre", tiny_bert, tiny_bert, False), {"cls": X}, {})
    ft = ModelEmbeddings(
        ModelSource("ft", "ft=run", "run/best", True),
        {"cls": X, "normed": X * 2},
        {},
        norm="isobn",
        norm_pooling="cls",
    )
    cfg = AnalysisConfig(out=str(tmp_path / "an"), models=["pre", "ft=run"])
    payload = write_analysis(cfg, "file", "dev", [pre, ft])
    assert payload["columns"] == ["pre", "ft (before norm)", "ft (after IsoBN)"]
    first, second = payload["models"]
    assert first["method"] is None and first["before"] is None and first["transform"] is None
    assert (second["before"], second["after"], second["transform"]) == (
        "cls",
        "cls (after isobn)",
        "isobn",
    )
    report = (tmp_path / "an" / "report.md").read_text()
    assert "| ft | - | `isobn` | " in report
