"""The run-directory reader shared by report and figures: no training needed."""

import json

import pytest

from isobn.errors import UserError
from isobn.training.report import collect_runs
from isobn.training.runs import finished_run_dirs, read_log, read_run


def write_run(directory, config, metrics=None, log_lines=()):
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(config))
    if metrics is not None:
        (directory / "metrics.json").write_text(json.dumps(metrics))
    (directory / "log.jsonl").write_text("".join(line + "\n" for line in log_lines))
    return directory


def test_read_run_skips_a_cut_log_line_and_finds_evaluations(tmp_path):
    run = read_run(
        write_run(
            tmp_path / "r",
            {"task": "mr", "norm": "isobn", "seed": 3},
            {"main_metric": "accuracy"},
            [
                json.dumps({"step": 1, "loss": 0.7}),
                json.dumps({"step": 2, "epoch": 1.0, "dev": {"accuracy": 0.6}}),
                '{"step": 3, "dev": {"acc',  # cut by a kill
            ],
        )
    )
    assert (run.task, run.method, run.seed, run.main_metric) == ("mr", "isobn", 3, "accuracy")
    assert len(run.log) == 2 and [e["step"] for e in run.evaluations] == [2]
    unfinished = read_run(write_run(tmp_path / "u", {"train_file": "a.csv", "norm": "none"}))
    assert unfinished.metrics is None and unfinished.main_metric is None
    assert unfinished.task == "a" and unfinished.evaluations == []
    assert unfinished.method == "none"
    legacy = read_run(write_run(tmp_path / "l", {"method": "isobn:bias_correction=false"}))
    assert legacy.method == "isobn:bias_correction=false"  # canonical, as the figures key it
    assert read_log(tmp_path / "missing.jsonl") == []


def test_missing_or_broken_files_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="config.json not found"):
        read_run(tmp_path)
    broken = write_run(tmp_path / "b", {"task": "mr"})
    (broken / "metrics.json").write_text("{")
    with pytest.raises(UserError, match="metrics.json is not valid JSON"):
        read_run(broken)
    with pytest.raises(UserError, match="not valid JSON"):
        collect_runs(tmp_path)
    (broken / "metrics.json").write_text("[]")
    with pytest.raises(UserError, match="holds a JSON list, not an object"):
        collect_runs(tmp_path)
    (broken / "metrics.json").write_text(json.dumps({"task": "mr", "seed": 1}))
    with pytest.raises(UserError, match="metrics.json has no main_metric: not written by"):
        collect_runs(tmp_path)


def test_finished_runs_below_a_directory_in_a_stable_order(tmp_path):
    (tmp_path / "metrics.json").write_text("{}")  # the directory itself is no run
    for name in ("mr/none/seed1", "mr/isobn/seed1", "mr-b/x"):
        metrics = {"task": "mr", "norm": "none", "seed": 1, "main_metric": "accuracy"}
        write_run(tmp_path / name, {"task": "mr"}, metrics)
    write_run(tmp_path / "mr/isobn/seed2", {"task": "mr"})  # unfinished
    dirs = finished_run_dirs(tmp_path)
    expected = ["mr/isobn/seed1", "mr/none/seed1", "mr-b/x"]  # paths sort by their parts
    assert [d.relative_to(tmp_path).as_posix() for d in dirs] == expected
    assert [r["run_dir"] for r in collect_runs(tmp_path)] == expected
