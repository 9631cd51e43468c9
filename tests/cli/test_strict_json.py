"""Every JSON file the commands write parses with a strict parser (no bare NaN / Infinity),
also when a score is undefined (Pearson on constant targets), and the tables built from them
still say "undefined" (isobn.json_text)."""

from __future__ import annotations

import json
import math
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
    for suffix in ("json", "jsonl"):
        output = tmp_path / f"predictions.{suffix}"
        argv = ["predict", "--checkpoint", str(run), "--input", flat_files["texts"]]
        assert main([*argv, "--output", str(output)]) == 0
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
