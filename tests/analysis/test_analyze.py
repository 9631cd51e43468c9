"""`isobn analyze` on a tiny random BERT: JSON keys, figures, report, the compare path."""

import json

import numpy as np
import pytest

from isobn.analysis import (
    AnalysisConfig,
    ModelEmbeddings,
    ModelSource,
    analyze,
    embed,
    embedding_names,
    load_examples,
    metrics_table,
    parse_model_spec,
    read_layers,
)
from isobn.analysis.run import warn_if_rank_limited
from isobn.cli.main import main
from isobn.errors import UserError
from isobn.isotropy import report
from isobn.isotropy_stats import EmbeddingStats
from isobn.tasks import load_files
from isobn.training.train import TrainConfig, train

PNG_HEADER = b"\x89PNG\r\n\x1a\n"
REPORT_KEYS = set(report(np.random.default_rng(0).normal(size=(10, 3))))


def assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_HEADER, f"{path} is not a PNG"
    assert len(data) > 5_000, f"{path} is only {len(data)} bytes"


@pytest.fixture(scope="module")
def isobn_run(tmp_path_factory, tiny_bert, sentiment_files):
    out = tmp_path_factory.mktemp("runs") / "tiny-isobn"
    cfg = TrainConfig(
        out=str(out),
        model=tiny_bert,
        train_file=sentiment_files["train"],
        dev_file=sentiment_files["dev"],
        pooling="cls",
        method="isobn",
        epochs=1,
        batch_size=16,
        max_length=32,
        learning_rate=1e-3,
    )
    train(cfg)
    return out


def test_single_model_all_poolings_and_layers(tmp_path, tiny_bert, sentiment_files):
    out = tmp_path / "an"
    rc = main(
        [
            "analyze",
            "--model",
            tiny_bert,
            "--train",
            sentiment_files["train"],
            "--dev",
            sentiment_files["dev"],
            "--pooling",
            "all",
            "--layers",
            "all",
            "--max-examples",
            "50",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    payload = json.loads((out / "isotropy.json").read_text())
    for key in ("model", "task", "split", "n_examples", "models", "columns", "config"):
        assert key in payload
    assert payload["split"] == "train" and payload["n_examples"] == 50
    assert payload["model"] == tiny_bert and payload["task"] == "file"
    (entry,) = payload["models"]
    assert entry["kind"] == "encoder" and entry["norm"] is None
    assert set(entry["reports"]) == {"cls", "pooler", "mean"}
    for values in entry["reports"].values():
        assert set(values) == REPORT_KEYS and values["n"] == 50
    assert set(entry["layers"]) == {"cls", "mean"}
    assert len(entry["layers"]["cls"]) == 3  # embedding layer + 2 transformer layers
    # the top layer's mean of tokens is the "mean" pooling
    assert entry["layers"]["mean"][-1]["isoscore"] == pytest.approx(
        entry["reports"]["mean"]["isoscore"], rel=1e-6
    )
    for name in ("std_histogram", "correlation", "spectrum", "layers"):
        assert_png(out / f"{name}.png")
    text = (out / "report.md").read_text()
    for name in ("std_histogram", "correlation", "spectrum", "layers"):
        assert f"]({name}.png)" in text
    assert "Std ranges from" in text and "| metric | cls | pooler | mean |" in text


def test_subsample_is_deterministic(tmp_path, sentiment_files):
    def texts(seed, split="dev"):
        cfg = AnalysisConfig(
            out=str(tmp_path),
            train_file=sentiment_files["train"],
            dev_file=sentiment_files["dev"],
            split=split,
            max_examples=20,
            seed=seed,
        )
        task, examples, name = load_examples(cfg)
        return name, [e.text for e in examples]

    name, first = texts(0)
    assert name == "dev" and len(first) == 20
    assert texts(0) == (name, first) and texts(1) != (name, first)
    assert len(texts(0, "train")[1]) == 20


def test_compare_pretrained_with_isobn_checkpoint(tmp_path, tiny_bert, sentiment_files, isobn_run):
    out = tmp_path / "cmp"
    rc = main(
        [
            "analyze",
            "--compare",
            f"pre={tiny_bert}",
            str(isobn_run),  # a run directory, labelled by its name
            f"best={isobn_run / 'best'}",
            "--train",
            sentiment_files["train"],
            "--dev",
            sentiment_files["dev"],
            "--split",
            "dev",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    payload = json.loads((out / "isotropy.json").read_text())
    assert payload["model"] == [f"pre={tiny_bert}", str(isobn_run), f"best={isobn_run / 'best'}"]
    pre, run, best = payload["models"]
    assert pre["label"] == "pre" and pre["kind"] == "encoder"
    assert set(pre["reports"]) == {"cls"}  # the checkpoint's pooling is the default
    assert run["label"] == "tiny-isobn" and run["kind"] == "checkpoint"
    assert run["norm"] == "isobn" and run["norm_pooling"] == "cls"
    assert set(run["reports"]) == {"cls", "cls (after isobn)"}
    assert run["reports"] == best["reports"]
    before, after = run["reports"]["cls"], run["reports"]["cls (after isobn)"]
    assert set(before) == set(after) == REPORT_KEYS
    assert before != after
    assert payload["columns"] == [
        "pre",
        "tiny-isobn (before norm)",
        "tiny-isobn (after IsoBN)",
        "best (before norm)",
        "best (after IsoBN)",
    ]
    text = (out / "report.md").read_text()
    assert "| metric | pre | tiny-isobn (before norm) | tiny-isobn (after IsoBN) |" in text
    assert "- **tiny-isobn (after IsoBN)**: Std ranges from" in text
    assert "leaves every correlation unchanged" in text
    # IsoBN rescales dims: correlations (hence their summaries) are unchanged by it
    assert after["mean_abs_corr"] == pytest.approx(before["mean_abs_corr"], abs=1e-6)
    for name in ("std_histogram", "correlation", "spectrum"):
        assert_png(out / f"{name}.png")
    assert not (out / "layers.png").exists()


def test_another_pooling_of_a_checkpoint_has_no_after_norm(sentiment_files, isobn_run):
    task = load_files(
        sentiment_files["train"], sentiment_files["dev"], text_column="text", label_column="label"
    )
    examples = task.splits["dev"][:12]
    m = embed(parse_model_spec(str(isobn_run)), examples, pooling="mean", batch_size=5)
    assert set(m.pooled) == {"mean"} and m.pooled["mean"].shape == (12, 32)
    assert m.norm == "isobn" and m.norm_pooling == "cls"
    assert [name for _, _, name in embedding_names([m])] == ["mean"]
    own = embed(parse_model_spec(str(isobn_run)), examples, batch_size=5)
    assert set(own.pooled) == {"cls", "normed"}
    # rows come back in the order of the examples whatever the length-sorted batches were
    whole = embed(parse_model_spec(str(isobn_run)), examples, batch_size=64)
    np.testing.assert_allclose(own.pooled["normed"], whole.pooled["normed"], atol=1e-4)
    assert not np.allclose(own.pooled["cls"], own.pooled["normed"])


def test_model_specs(tiny_bert, isobn_run):
    labelled = parse_model_spec(f"pre={tiny_bert}")
    assert labelled.label == "pre" and labelled.path == tiny_bert and not labelled.checkpoint
    run = parse_model_spec(str(isobn_run))
    assert run.checkpoint and run.path.endswith("best") and run.label == "tiny-isobn"
    encoder = parse_model_spec(tiny_bert)
    assert not encoder.checkpoint and encoder.path == tiny_bert
    with pytest.raises(UserError, match="label=path"):
        parse_model_spec(f"={tiny_bert}")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--split", "test"], "no test split"),
        (["--compare", "x=/nonexistent/model", "y=/nonexistent/other"], "does not exist"),
        (["--max-examples", "1"], "at least 2"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, tiny_bert, sentiment_files, capsys, extra, message):
    args = ["analyze", "--train", sentiment_files["train"], "--dev", sentiment_files["dev"]]
    if "--compare" not in extra:
        args += ["--model", tiny_bert]
    rc = main(args + extra + ["--out", str(tmp_path / "an")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and "\n" not in err


def test_duplicate_labels_are_refused(tmp_path, tiny_bert, sentiment_files):
    cfg = AnalysisConfig(
        out=str(tmp_path / "an"),
        models=[f"a={tiny_bert}", f"a={tiny_bert}"],
        train_file=sentiment_files["train"],
        dev_file=sentiment_files["dev"],
    )
    with pytest.raises(UserError, match="labelled 'a'"):
        analyze(cfg)


def test_embedding_stats_on_known_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 6)) * np.array([10.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    s = EmbeddingStats.from_embeddings("x", X, top=4)
    assert s.dead == 1 and len(s.std) == 6
    assert list(s.top_dims[:1]) == [0] and s.top_corr.shape == (4, 4)
    assert s.abs_corr.shape == (10,)  # 5 alive dims -> 10 pairs
    assert s.dims_for_half_variance() == 1  # the std-10 dim holds ~96% of the variance
    assert s.components_for_share(0.5) == 1 and s.components_for_share(1.0) <= 5
    table = metrics_table([s])
    assert table.splitlines()[0] == "| metric | x |" and "| dead dims | 1 |" in table


def test_column_names_with_several_poolings(tiny_bert):
    X = np.zeros((2, 3), np.float32)
    pre = ModelEmbeddings(
        ModelSource("pre", tiny_bert, tiny_bert, False), {"cls": X, "mean": X}, {}
    )
    ft = ModelEmbeddings(
        ModelSource("ft", "ft=run", "run/best", True),
        {"cls": X, "mean": X, "normed": X},
        {},
        norm="isobn",
        norm_pooling="mean",
    )
    assert [name for _, _, name in embedding_names([pre, ft])] == [
        "pre cls",
        "pre mean",
        "ft cls",
        "ft mean (before norm)",
        "ft mean (after IsoBN)",
    ]
    assert [name for _, _, name in embedding_names([ft])] == [
        "cls",
        "mean (before norm)",
        "mean (after IsoBN)",
    ]


def test_fewer_examples_than_dimensions_warn(caplog):
    def warned(n, d):
        source = ModelSource("pre", "pre", "pre", False)
        caplog.clear()
        warn_if_rank_limited([ModelEmbeddings(source, {"cls": np.zeros((n, d))}, {})])
        return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]

    (message,) = warned(20, 32)
    assert "pre: 20 examples for 32 dimensions" in message and "rank at most 19" in message
    assert "--max-examples above 32" in message
    assert warned(32, 32) and not warned(33, 32)


def test_layer_reading_names_constant_layers():
    rng = np.random.default_rng(0)
    constant = report(np.ones((20, 4)))
    varied = [report(rng.normal(size=(20, 4)) * (i + 1)) for i in range(2)]
    first, second = read_layers([constant, *varied])
    assert "at layer 0 the vector is the same for every text" in first
    assert "lowest" in first and "at layer 0" not in first.split(";")[0]
    assert second.startswith("The average cosine goes from")


def test_without_matplotlib_the_tables_are_written_and_the_figures_skipped(
    tmp_path, tiny_bert, sentiment_files, monkeypatch, caplog
):
    """isobn run from its source on a bare machine (the GPU check's): no matplotlib."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.split(".")[0] == "matplotlib" else real(name, *a),
    )
    out = tmp_path / "an"
    argv = ["analyze", "--model", tiny_bert, "--train", sentiment_files["train"]]
    argv += ["--dev", sentiment_files["dev"], "--max-examples", "50", "--out", str(out)]
    assert main(argv) == 0
    assert (out / "isotropy.json").is_file() and "| effective rank |" in (
        out / "report.md"
    ).read_text()
    assert not list(out.glob("*.png")) and ".png)" not in (out / "report.md").read_text()
    assert "matplotlib is not installed: no figures (pip install matplotlib)" in caplog.text
