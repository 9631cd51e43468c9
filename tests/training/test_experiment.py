"""`isobn experiment` on the tiny model: 2 tasks x 2 methods x 2 seeds, tables, resume, shards."""

import json
import os
import re

import pytest
from conftest import QUICK_ARGS

from isobn.cli.main import main
from isobn.training.experiment import grid, parse_shard
from isobn.training.report import aggregate, wilcoxon_p
from isobn.training.train import TrainConfig

QUICK = [*QUICK_ARGS, "--pooling", "cls"]


def test_grid_tables_and_resume(tmp_path, tiny_bert, glue_dir, capsys):
    out = tmp_path / "exp"
    argv = [
        "experiment",
        "--tasks",
        "sst2,rte",
        "--methods",
        "none,isobn",
        "--seeds",
        "1,2",
        "--data-dir",
        glue_dir,
        "--model",
        tiny_bert,
        "--out",
        str(out),
        *QUICK,
    ]
    assert main(argv) == 0
    runs = sorted(p.parent for p in out.rglob("metrics.json"))
    assert len(runs) == 8
    for name in ("results.json", "results.csv", "results.md"):
        assert (out / name).stat().st_size > 0
    results = json.loads((out / "results.json").read_text())
    assert results["tasks"] == ["rte", "sst2"] and results["methods"] == ["none", "isobn"]
    cell = results["cells"]["sst2"]["isobn"]
    assert cell["n"] == 2 and set(cell) >= {"median", "std", "mean", "best"}
    assert set(results["average"]) == {"none", "isobn"}
    assert results["paired_vs_none"]["isobn"]["all"]["n"] == 4
    table = (out / "results.md").read_text()
    assert "| isobn |" in table and "Wilcoxon" in table
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 4
    # a re-run skips every finished run: their files are untouched
    stamps = {p: os.stat(p / "metrics.json").st_mtime_ns for p in runs}
    capsys.readouterr()
    assert main(argv) == 0
    assert {p: os.stat(p / "metrics.json").st_mtime_ns for p in runs} == stamps
    # `isobn report` re-renders the same tables
    (out / "results.md").unlink()
    assert main(["report", str(out), "--no-figures"]) == 0
    assert (out / "results.md").read_text() == table


def test_shards_partition_the_grid(tmp_path):
    base = TrainConfig(out=str(tmp_path))
    configs = grid(base, ["a", "b"], ["none", "isobn"], [1, 2, 3])
    assert len({c.out for c in configs}) == 12
    shards = [[c for i, c in enumerate(configs) if i % 3 == k - 1] for k in (1, 2, 3)]
    assert sorted(c.out for s in shards for c in s) == sorted(c.out for c in configs)
    assert parse_shard("2/3") == (2, 3)


def test_shard_runs_only_its_share(tmp_path, tiny_bert, glue_dir, capsys):
    out = tmp_path / "exp"
    argv = [
        "experiment",
        "--tasks",
        "sst2",
        "--methods",
        "none,isobn",
        "--seeds",
        "1",
        "--data-dir",
        glue_dir,
        "--model",
        tiny_bert,
        "--out",
        str(out),
        "--shard",
        "2/2",
        *QUICK,
    ]
    assert main(argv) == 0
    assert [p.parent.parent.name for p in out.rglob("metrics.json")] == ["isobn"]


def test_aggregate_by_hand():
    runs = [
        {
            "task": "t",
            "norm": norm,
            "seed": seed,
            "main_metric": "accuracy",
            "dev": {"accuracy": value},
        }
        for norm, values in (("none", [0.70, 0.72, 0.74]), ("isobn", [0.71, 0.75, 0.74]))
        for seed, value in zip((1, 2, 3), values)
    ]
    results = aggregate(runs)
    none = results["cells"]["t"]["none"]
    assert none["median"] == pytest.approx(72.0) and none["std"] == pytest.approx(2.0)
    assert none["best"] == pytest.approx(74.0) and none["mean"] == pytest.approx(72.0)
    paired = results["paired_vs_none"]["isobn"]["tasks"]["t"]
    assert paired["mean_diff"] == pytest.approx((1 + 3 + 0) / 3)
    assert paired["wins"] == 2
    assert wilcoxon_p([0.0, 0.0]) == 1.0 and wilcoxon_p([1.0]) is None
    # 6 positive differences give the smallest exact two-sided p: 2 / 2**6
    assert wilcoxon_p([1, 2, 3, 4, 5, 6]) == pytest.approx(2 / 64)


def test_an_undefined_score_is_tabled_as_undefined_not_as_a_number():
    """Pearson/Spearman on constant dev targets are NaN (isobn.tasks.metrics): the tables say
    "undefined", never "nan" and never a number."""
    from isobn.training.report import markdown

    runs = [
        {"task": t, "method": m, "seed": seed, "main_metric": "pearson_spearman",
         "dev": {"pearson_spearman": float("nan") if t == "flat" else 0.5 + 0.01 * seed}}
        for t in ("flat", "sts") for m in ("none", "isobn") for seed in (1, 2)
    ]  # fmt: skip
    table = markdown(aggregate(runs))
    flat = [line for line in table.splitlines() if line.startswith("| none |")]
    assert flat and all("| undefined (n=2) |" in line for line in flat[:1])
    assert "undefined +-" not in table  # no spread beside an undefined median
    assert "nan" not in table.lower().replace("undefined", "")
    assert "51.50 +- 0.71 (n=2)" in table  # the defined task keeps its numbers


def test_columns_are_the_data_each_run_trained_on(tmp_path, tiny_bert, sentiment_files, capsys):
    """A run on files is stored and tabled under the name of its data (--name, or the
    training file's): two data sets in one directory are two columns of n = 2 seeds each."""
    import shutil

    out = tmp_path / "exp"
    base = ["experiment", "--model", tiny_bert, "--out", str(out), "--methods", "none"]
    base += ["--seeds", "1,2", *QUICK]
    sentiment = ["--train", sentiment_files["train"], "--dev", sentiment_files["dev"]]
    reviews = tmp_path / "reviews"
    reviews.mkdir()
    other = [
        shutil.copy(sentiment_files[split], reviews / f"{split}.csv") for split in ("train", "dev")
    ]
    assert main([*base, *sentiment, "--name", "sentiment"]) == 0
    assert main([*base, "--train", str(other[0]), "--dev", str(other[1]), "--max-train", "48"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["tasks"] == ["reviews", "sentiment"]
    assert {task: cells["none"]["n"] for task, cells in results["cells"].items()} == {
        "reviews": 2,
        "sentiment": 2,
    }
    for metrics in out.rglob("metrics.json"):  # OUT/DATA/METHOD/seedS
        assert json.loads(metrics.read_text())["task"] == metrics.parents[2].name
    header = (out / "results.md").read_text()
    assert "reviews" in header and "sentiment" in header and "| file" not in header
    # the same name for other data is not the same runs: refused, nothing reused
    capsys.readouterr()
    argv = [*base, "--train", str(other[0]), "--dev", str(other[1]), "--name", "sentiment"]
    assert main(argv) == 2
    assert "holds a finished run with other settings" in capsys.readouterr().err


def test_two_runs_of_one_cell_are_never_merged_silently():
    from isobn.errors import UserError

    run = {"task": "t", "method": "none", "seed": 1, "main_metric": "accuracy"}
    runs = [{**run, "dev": {"accuracy": 0.5}, "run_dir": d} for d in ("a/none/seed1", "b/x")]
    with pytest.raises(UserError, match="two runs of task t, method none, seed 1: a/none/seed1"):
        aggregate(runs)


@pytest.mark.parametrize(
    ("methods", "expected"),
    [
        ("none,istar:weight=-3,zeta=0.5", ["none", "istar:weight=-3.0,zeta=0.5"]),
        ("istar:weight=-3,zeta=0.5,isobn", ["istar:weight=-3.0,zeta=0.5", "isobn"]),
        ("none, isobn:beta=0.25, eps=0.01 ,layernorm", None),
    ],
)
def test_methods_split_at_commas_that_start_a_method(methods, expected):
    from isobn.cli.experiment import parse_methods
    from isobn.cli.main import build_parser

    args = build_parser().parse_args(["experiment", "--out", "x", "--methods", methods])
    parsed = parse_methods(args)
    if expected is None:
        assert len(parsed) == 3 and parsed[1].startswith("isobn:") and "eps=0.01" in parsed[1]
    else:
        assert parsed == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,01,+1", "--seeds names seed 1 twice (1, 01, +1); give each seed once"),
        ("2, 02", "--seeds names seed 2 twice (2, 02)"),
    ],
)
def test_two_spellings_of_one_seed_are_refused(text, message):
    """Seeds are compared as integers: `1,01,+1` would run seed 1 three times into one
    directory and into the average."""
    from isobn.errors import UserError
    from isobn.training.experiment import parse_seeds

    with pytest.raises(UserError, match=re.escape(message)):
        parse_seeds(text)
    assert parse_seeds("3, 1,+2") == [3, 1, 2]


def test_runs_take_this_hosts_share_of_the_cores(
    tmp_path, tiny_bert, glue_dir, monkeypatch, capsys
):
    """Another job registered on the host (a second shard) halves the runs' threads; a user's
    OMP_NUM_THREADS is kept."""
    from isobn.training import host_jobs

    monkeypatch.setattr(host_jobs, "host_jobs_dir", lambda: tmp_path / "jobs")
    monkeypatch.setattr(host_jobs, "usable_cores", lambda: 8)
    threads = []
    monkeypatch.setattr(host_jobs, "use_threads", threads.append)
    argv = ["experiment", "--tasks", "sst2", "--methods", "none", "--seeds", "1", "--data-dir"]
    argv += [glue_dir, "--model", tiny_bert, *QUICK]
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with host_jobs.registered_jobs(1):  # the other shard
        assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert threads == [4]  # 8 cores, 2 live jobs
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert threads == [4]  # not called: the user's choice stands
    assert host_jobs.live_jobs() == 0  # the experiment's entry is gone with it


def test_one_seed_shows_its_score_without_a_spread():
    """A single seed has no spread: its median alone, not "+- 0.00" (the sample std is
    undefined for n = 1); two seeds show theirs."""
    from isobn.training.report import markdown

    runs = [
        {
            "task": "mr",
            "method": "none",
            "seed": 1,
            "main_metric": "accuracy",
            "dev": {"accuracy": 0.75},
        },
        {
            "task": "mr",
            "method": "isobn",
            "seed": 1,
            "main_metric": "accuracy",
            "dev": {"accuracy": 0.70},
        },
        {
            "task": "mr",
            "method": "isobn",
            "seed": 2,
            "main_metric": "accuracy",
            "dev": {"accuracy": 0.80},
        },
    ]
    table = markdown(aggregate(runs))
    assert "| none | 75.00 (n=1) |" in table
    assert "| isobn | 75.00 +- 7.07 (n=2) |" in table


def test_a_warning_about_the_data_is_shown_once_not_for_every_run(
    tmp_path, tiny_bert, sentiment_files, caplog
):
    """Each run of an experiment loads its task: a dev file repeating training rows, and a
    --max-train that misses classes, were warned about again at every run (four times here)."""
    import csv
    import logging

    with open(sentiment_files["train"]) as source:
        rows = list(csv.reader(source)) + [[f"rare text {i}", f"rare{i}"] for i in range(3)]
    train, dev = tmp_path / "train.csv", tmp_path / "dev.csv"
    for path in (train, dev):  # dev repeats every training row
        with open(path, "w", newline="") as target:
            csv.writer(target).writerows(rows)
    argv = ["experiment", "--model", tiny_bert, "--train", str(train), "--dev", str(dev),
            "--methods", "none,isobn", "--seeds", "1,2", "--max-train", "4",
            "--out", str(tmp_path / "exp"), *QUICK, "--isotropy-examples", "0"]  # fmt: skip
    with caplog.at_level(logging.WARNING):
        assert main(argv) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == len(set(warned)), warned
    assert any("repeat a training text" in message for message in warned), warned
    assert any("--max-train 4 keeps 4 training rows" in message for message in warned)
