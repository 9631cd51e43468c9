"""Every JSON file the commands write parses with a strict parser (no bare NaN / Infinity),
also when a score is undefined (Pearson on constant targets), and the tables built from them
still say "undefined" (isobn.json_text)."""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
from pathlib import Path

import pytest
from conftest import regression_rows, write_csv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isobn import json_text
from isobn.cli.main import main

QUICK = ["--epochs", "1", "--batch-size", "16", "--max-length", "24", "--log-every-steps", "1"]

STUDY = """[study]
name = "flat"
model = "{model}"
[train]
epochs = 1
batch_size = 16
max_length = 24
isotropy_examples = 16
[tasks.flat]
train_file = "{train}"
dev_file = "{dev}"
label_column = "score"
regression = true
[[block]]
name = "main"
tasks = ["flat"]
sizes = [24]
methods = ["none", "isobn"]
seeds = [1]
"""


def json_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".json", ".jsonl") and p.is_file())


def check_strict(path: Path) -> None:
    """`path` parses with a parser that refuses bare NaN / Infinity (one value, or one per
    line of a .jsonl)."""
    text = path.read_text(encoding="utf-8")
    chunks = (
        [line for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl" else [text]
    )
    for chunk in chunks:
        try:
            json_text.strict_loads(chunk)
        except ValueError as error:
            raise AssertionError(f"{path} is not strict JSON: {error}") from None


@pytest.fixture(scope="module")
def flat_files(tmp_path_factory) -> dict[str, str]:
    """Regression files whose dev and test targets are constant: Pearson is undefined."""
    d = tmp_path_factory.mktemp("flat")
    flat = [dict(row, score=2.0) for row in regression_rows(16, 1)]
    return {
        "train": write_csv(d / "train.csv", regression_rows(32, 0)),
        "dev": write_csv(d / "dev.csv", flat),
        "texts": write_csv(d / "texts.csv", [{"text": r["text"]} for r in flat]),
    }


@pytest.mark.slow
def test_every_json_file_of_every_command_is_strict_with_an_undefined_score(
    tmp_path, tiny_bert, flat_files, capsys
):
    data = ["--train", flat_files["train"], "--dev", flat_files["dev"], "--label-column", "score"]
    run = tmp_path / "run"
    assert main(["train", "--model", tiny_bert, *data, "--test", flat_files["dev"],
                 "--regression", "--out", str(run), "--pooling", "pooler", "--keep-last",
                 *QUICK]) == 0  # fmt: skip
    json_text.strict_loads(capsys.readouterr().out)  # the result printed on stdout
    metrics = json_text.strict_loads((run / "metrics.json").read_text())
    assert metrics["dev"]["pearson"] is None and "pearson" in metrics["dev"]["undefined"]
    argv = ["predict", "--checkpoint", str(run), "--input", flat_files["texts"]]
    for suffix in ("json", "jsonl"):
        assert main([*argv, "--output", str(tmp_path / f"predictions.{suffix}")]) == 0
    capsys.readouterr()
    assert main(argv) == 0  # JSON lines on standard output
    for line in capsys.readouterr().out.splitlines():
        json_text.strict_loads(line)
    exp = tmp_path / "exp"
    assert main(["experiment", "--model", tiny_bert, *data, "--regression", "--methods",
                 "none,isobn", "--seeds", "1,2", "--out", str(exp), *QUICK]) == 0  # fmt: skip
    assert main(["report", str(exp), "--no-figures"]) == 0
    study_file = tmp_path / "flat.toml"
    study_file.write_text(
        STUDY.format(model=tiny_bert, train=flat_files["train"], dev=flat_files["dev"])
    )
    study = tmp_path / "study"
    assert main(["study", str(study_file), "--out", str(study)]) == 0
    assert main(["study", str(study_file), "--out", str(study), "--report-only"]) == 0
    analysis = tmp_path / "analysis"
    assert main(["analyze", "--model", str(run), *data, "--regression", "--split", "dev",
                 "--out", str(analysis)]) == 0  # fmt: skip
    exported = tmp_path / "exported"  # transformers' writers: config.json, tokenizer files
    assert main(["export", str(run), "--out", str(exported)]) == 0
    compared = tmp_path / "compared"
    assert main(["analyze", "--compare", f"pre={tiny_bert}", f"tuned={run}", *data,
                 "--regression", "--split", "dev", "--out", str(compared)]) == 0  # fmt: skip
    written = json_files(tmp_path)
    assert (run / "last" / "trainer_state.json") in written  # --keep-last: the resume point
    for folder in (run, exp, study, analysis, exported, compared):
        assert any(p.is_relative_to(folder) for p in written), folder
    for path in written:
        check_strict(path)
    # read back through isobn, undefined is NaN again: the tables say so, with no spread
    results = (exp / "results.md").read_text()
    assert "| undefined (n=2) |" in results and "nan" not in results.lower()
    table = (study / "RESULTS.md").read_text()
    assert "| flat | 24 | `isobn` | 1 | undefined |" in table
    cells = json_text.loads((study / "results.json").read_text())["cells"]
    assert all(math.isnan(cell["dev_score"]) for cell in cells)


SCORES = st.sampled_from([math.nan, math.inf, -math.inf, 0.5, 0.25])


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scores=st.lists(st.tuples(SCORES, SCORES), min_size=1, max_size=3))
def test_hand_edited_metrics_with_bare_nan_are_reported_in_strict_json(tmp_path_factory, scores):
    """metrics.json files edited by hand (or written by an earlier isobn) with bare NaN and
    Infinity: `isobn report` reads them and writes strict JSON, "undefined" in its tables."""
    directory = tmp_path_factory.mktemp("edited")
    for seed, (dev, test) in enumerate(scores, 1):
        run = directory / f"run{seed}"
        run.mkdir()
        (run / "config.json").write_text("{}")
        metrics = {"task": "t", "method": "none", "seed": seed, "main_metric": "pearson",
                   "dev": {"pearson": dev}, "test": {"pearson": test}}  # fmt: skip
        (run / "metrics.json").write_text(json.dumps(metrics))  # bare NaN / Infinity
    assert main(["report", str(directory), "--no-figures"]) == 0
    check_strict(directory / "results.json")
    results = json_text.loads((directory / "results.json").read_text())
    dev = [d for d, _ in scores]
    median = results["cells"]["t"]["none"]["median"]
    assert math.isnan(median) if any(map(math.isnan, dev)) else not math.isnan(median)
    table = (directory / "results.md").read_text()
    if math.isnan(median):
        assert "| undefined (n=" in table
    assert "nan" not in table.lower() and "undefined +-" not in table


# a run's JSON files that export writes again, a key of each, and what export does with a
# non-finite number there
EDITED = [
    ("config.json", "a_setting_of_mine", "kept"),  # transformers: {"__float__": "Infinity"}
    ("config.json", "layer_norm_eps", "either"),  # kept; refused where the logits are NaN
    ("config.json", "hidden_dropout_prob", "refused"),  # every forward pass would stop on it
    ("tokenizer_config.json", "clean_up_tokenization_spaces", "refused"),  # a bare NaN
]


def edit_json(path: Path, key: str, value: float) -> None:
    """Set `key` of the JSON object in `path` as a hand edit does (json.dumps: bare NaN)."""
    values = json.loads(path.read_text())
    values[key] = value
    path.write_text(json.dumps(values))


def command(argv: list[str]) -> tuple[int, str]:
    """`isobn ARGV` in this process: (exit code, stderr)."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, stderr.getvalue()


def same_number(a, b) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 0.125])
@pytest.mark.parametrize("edit", EDITED, ids=[key for _, key, _ in EDITED])
def test_export_of_a_hand_edited_model_is_strict_or_one_line(tmp_path, pooler_run, edit, value):
    """A number edited by hand into a run's config.json or tokenizer_config.json: `isobn
    export` writes strict JSON that means the same (transformers reads the number back), or
    refuses in one line naming the file, the key and the number: NaN or Infinity in the
    tokenizer's settings, which transformers writes as bare words (it wrote them so), a
    dropout rate that is no probability (a dropout traceback before), a setting that makes
    the logits NaN (an allclose traceback before)."""
    from transformers import AutoConfig

    name, key, fate = edit
    directory = tmp_path
    run = directory / "run"
    shutil.copytree(pooler_run, run)
    edit_json(run / "best" / name, key, value)
    out = directory / "out"
    code, err = command(["export", str(run), "--out", str(out)])
    if code == 0:
        assert math.isfinite(value) or fate != "refused", err
        for path in json_files(out):
            check_strict(path)
        if name == "config.json":  # the same number, as transformers reads it back
            assert same_number(getattr(AutoConfig.from_pretrained(out), key), value)
        return
    assert code == 2 and not math.isfinite(value) and fate != "kept", err
    assert err.count("\n") == 1 and err.startswith("isobn export: error: "), err
    assert f" {key} to {json.dumps(value)}" in err and name in err, err
    assert sorted(p.name for p in directory.iterdir()) == ["run"]  # no export, no temporary


@pytest.mark.slow
def test_train_and_predict_refuse_what_they_could_not_write_or_run(
    tmp_path, tiny_bert, sentiment_files, pooler_run
):
    """train refuses NaN in the tokenizer's settings, which it would copy into best/ as a
    bare NaN, before --out is made; train, analyze and predict refuse a dropout rate that is
    no probability (a traceback at the first forward pass before)."""
    model = tmp_path / "model"
    shutil.copytree(tiny_bert, model)
    edit_json(model / "tokenizer_config.json", "clean_up_tokenization_spaces", math.nan)
    out = tmp_path / "run"
    data = ["--train", sentiment_files["train"], "--dev", sentiment_files["dev"]]
    code, err = command(["train", "--model", str(model), *data, "--out", str(out), *QUICK])
    assert code == 2 and not out.exists()
    tokenizer_config = model / "tokenizer_config.json"
    assert f"error: {tokenizer_config} sets clean_up_tokenization_spaces to NaN, which " in err
    edit_json(tokenizer_config, "clean_up_tokenization_spaces", True)
    edit_json(model / "config.json", "hidden_dropout_prob", math.inf)
    rate = "sets the dropout rate hidden_dropout_prob to Infinity, not a probability from 0 to 1"
    code, err = command(["train", "--model", str(model), *data, "--out", str(out), *QUICK])
    assert code == 2 and f"{model / 'config.json'} {rate}" in err and not out.exists()
    analysis = tmp_path / "analysis"
    code, err = command(["analyze", "--model", str(model), *data, "--out", str(analysis)])
    assert code == 2 and rate in err and not analysis.exists()
    exported = tmp_path / "exported"  # a plain transformers directory, edited
    assert command(["export", str(pooler_run), "--out", str(exported)])[0] == 0
    edit_json(exported / "config.json", "attention_probs_dropout_prob", -math.nan)
    texts = tmp_path / "texts.txt"
    texts.write_text("good\n")
    code, err = command(["predict", "--checkpoint", str(exported), "--input", str(texts)])
    assert code == 2 and err.count("\n") == 1
    assert f"{exported / 'config.json'} sets the dropout rate attention_probs_dropout_prob" in err


def test_an_export_that_would_not_be_strict_is_refused_by_its_last_check(tmp_path):
    """The check of what transformers wrote, whatever the loaders let through."""
    from isobn.errors import UserError
    from isobn.training.export import check_strict_json

    (tmp_path / "config.json").write_text('{"eps": 1e-12, "pooler": {"scale": [1, NaN]}}')
    (tmp_path / "tokenizer.json").write_text('{"model": {"dropout": null}}')
    with pytest.raises(UserError, match=r"export's OUT/config.json would set pooler.scale\[1\] "):
        check_strict_json(tmp_path, Path("OUT"))
    (tmp_path / "config.json").write_text('{"eps": 1e-12}')
    check_strict_json(tmp_path, Path("OUT"))


def test_the_json_files_of_a_hugging_face_model_with_isobn_are_strict(tmp_path, tiny_bert):
    """save_pretrained of a model with IsoBN attached (config.json's isobn entry) and
    isobn.hf.save_isobn (isobn_config.json): strict JSON."""
    import transformers as T

    import isobn

    model = T.AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    isobn.attach(model, momentum=None, beta=0.25)
    model.save_pretrained(tmp_path / "model")
    isobn.hf.save_isobn(model, tmp_path / "isobn")
    written = json_files(tmp_path)
    assert {p.name for p in written} >= {"config.json", "isobn_config.json"}
    for path in written:
        check_strict(path)
