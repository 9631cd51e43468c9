"""isobn study: the study file, the cell plan, locks and resume, and the statistics."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from isobn.errors import UserError
from isobn.study import stats
from isobn.study.runner import cell_path, finished_cells, run_jobs
from isobn.study.spec import load_study


def write_study(
    path: Path,
    tiny_bert: str,
    files: dict,
    seeds=(1, 2),
    methods=("none", "isobn"),
    epochs: int = 1,
) -> Path:
    path.write_text(f"""
[study]
name = "tiny"
model = "{tiny_bert}"
[train]
epochs = {epochs}
batch_size = 16
isotropy_examples = 32
[tasks.sent]
train_file = "{files["train"]}"
dev_file = "{files["dev"]}"
test_file = "{files["test"]}"
[[block]]
name = "main"
tasks = ["sent"]
sizes = [48]
methods = {json.dumps(list(methods))}
seeds = {json.dumps(list(seeds))}
[[block]]
name = "ablation"
tasks = ["sent"]
sizes = [48]
methods = ["none", "isobn:bias_correction=false"]
seeds = [1]
""")
    return path


def test_a_size_above_the_training_set_is_refused(tmp_path, tiny_bert, sentiment_files, capsys):
    """The loader takes at most `size` rows: a cell named n500 trained on 96 rows would be
    mislabelled (and the same as the full set), so it is refused with the fix."""
    from isobn.cli.main import main

    path = write_study(tmp_path / "s.toml", tiny_bert, sentiment_files, seeds=(1,))
    path.write_text(path.read_text().replace("sizes = [48]", "sizes = [500]", 1))
    assert main(["study", str(path), "--out", str(tmp_path / "out")]) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
    assert line == (
        "isobn study: error: task sent has 96 training rows, fewer than the study's size 500: "
        f'use sizes up to 96, or "full", in {path}'
    )
    assert not (tmp_path / "out" / "cells").exists()


def test_missing_task_files_are_refused_before_any_cell_runs(
    tmp_path, tiny_bert, sentiment_files, capsys
):
    """Checked when cells are to run (not by --report-only, which needs no data)."""
    from isobn.cli.main import main

    path = write_study(tmp_path / "s.toml", tiny_bert, sentiment_files, seeds=(1,))
    missing = tmp_path / "moved" / "dev.csv"
    path.write_text(path.read_text().replace(sentiment_files["dev"], str(missing)))
    out = tmp_path / "out"
    assert main(["study", str(path), "--out", str(out)]) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
    assert line == (
        f"isobn study: error: {path} [tasks.sent] dev_file: file not found: {missing} (a "
        "relative path is read from the directory isobn study runs in); check the path"
    )
    assert not (out / "cells").exists()


def test_cells_are_planned_once_in_running_order(tmp_path, tiny_bert, sentiment_files):
    study = load_study(write_study(tmp_path / "s.toml", tiny_bert, sentiment_files))
    keys = [c.key for c in study.cells()]
    assert keys == [
        "sent/n48/none/seed1",
        "sent/n48/isobn/seed1",
        "sent/n48/none/seed2",
        "sent/n48/isobn/seed2",
        "sent/n48/isobn_bias_correction=false/seed1",
    ]
    shared = study.cells()[0]
    assert shared.blocks == ("main", "ablation")  # the ablation's `none` seed 1 is the main one
    cfg = study.config(study.cells()[-1], out="x")
    assert cfg.method == "isobn:bias_correction=false" and cfg.max_train == 48 and cfg.seed == 1
    assert cfg.train_file == sentiment_files["train"] and cfg.model == tiny_bert


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[study\n", "is not valid TOML"),
        ("[train]\nepochs = 1\n", "declares no [[block]]"),
        (
            "[train]\nlearning_rat = 1\n[[block]]\ntasks=['mr']\nsizes=[10]\nmethods=['none']\n"
            "seeds=[1]\n",
            "unknown setting(s) ['learning_rat']",
        ),
        ("[train]\nseed = 1\n", "unknown setting(s) ['seed']"),
        (
            "[[block]]\ntasks=['mr']\nsizes=[10]\nmethods=['nope']\nseeds=[1]\n",
            "unknown method 'nope'",
        ),
        (
            "[[block]]\ntasks=['mr']\nsizes=[1]\nmethods=['none']\nseeds=[1]\n",
            "must be an integer >= 2",
        ),
        ("[[block]]\ntasks=['mr']\nmethods=['none']\nseeds=[1]\n", "lacks sizes"),
        (
            "[[block]]\ntasks=['mr']\nsizes=[10]\nmethods=['none']\nseeds=[1, 1]\n",
            "lists an item twice",
        ),
        (
            "[[block]]\ntasks=['tickets']\nsizes=[10]\nmethods=['none']\nseeds=[1]\n",
            "unknown task 'tickets': choose one of cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, "
            "wnli, mr, trec, sms-spam, or add a [tasks.tickets] table with train_file and dev_file",
        ),
        (  # one cell under two names
            "[[block]]\ntasks=['mr']\nsizes=[10]\nmethods=['isobn', 'isobn:beta=0.5']\nseeds=[1]\n",
            "names one method twice: 'isobn' and 'isobn:beta=0.5' are both 'isobn'; keep one",
        ),
        (
            "[train]\nepochs = 0\n[[block]]\ntasks=['mr']\nsizes=[10]\nmethods=['none']\n"
            "seeds=[1]\n",
            "--epochs must be a positive integer",
        ),
        (  # a quoted "false" would be a true boolean
            "[train]\ndrop_last = 'false'\n",
            "drop_last must be true or false (unquoted), got 'false'; write e.g. drop_last = true",
        ),
        ("[train]\nepochs = '3'\n", "epochs must be an integer, got '3'"),
        ("[train]\nepochs = 2.5\n", "epochs must be an integer, got 2.5"),
        ("[tasks.mr]\nmax_length = true\n", "[tasks.mr]: max_length must be an integer"),
        ("[train]\npooling = 3\n", "pooling must be a string, got 3"),
        ("[train]\nlearning_rate = 'fast'\n", "learning_rate must be a number"),
    ],
)
def test_bad_study_files_give_one_line(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError) as error:
        load_study(path)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_integer_for_a_float_setting_is_a_float(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        "[train]\nlearning_rate = 1\nweight_decay = 0\n"
        "[[block]]\ntasks=['mr']\nsizes=[10]\nmethods=['none']\nseeds=[1]\n"
    )
    train = load_study(path).train
    assert train == {"learning_rate": 1.0, "weight_decay": 0.0}
    assert all(isinstance(value, float) for value in train.values())


def test_missing_study_file(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "isobn.cli.main",
            "study",
            str(tmp_path / "no.toml"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"isobn study: error: study file not found: {tmp_path / 'no.toml'}; check the path"
    ]


@pytest.mark.slow
def test_two_processes_share_a_study_without_running_a_cell_twice(
    tmp_path, tiny_bert, sentiment_files
):
    path = write_study(tmp_path / "s.toml", tiny_bert, sentiment_files)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "isobn.cli.main", "study", str(path), "--out", str(out)]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    logs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], logs
    ran = [
        {line.split()[1] for line in err.splitlines() if line.startswith("[")} for _, err in logs
    ]
    assert ran[0].isdisjoint(ran[1])
    planned = {c.key for c in load_study(path).cells()}
    assert ran[0] | ran[1] == planned
    records = finished_cells(out)
    assert sorted(f"{r['task']}/n{r['size']}" for r in records) == ["sent/n48"] * 5
    assert not list((out / "runs").rglob("model.safetensors"))  # checkpoints removed
    text = (out / "RESULTS.md").read_text()
    assert "## Block `main`" in text and "| sent | 48 | `isobn` | 2 |" in text
    assert (out / "figures" / "forest.png").is_file()


@pytest.mark.slow
def test_blocks_runs_only_the_named_blocks_with_two_jobs(
    tmp_path, tiny_bert, sentiment_files, capsys, caplog
):
    """--blocks ablation with --jobs 2 (two spawned workers) runs the ablation's cells, the
    one it shares with the main block included, and nothing else; --plan lists the same."""
    from isobn.cli.main import main

    path = write_study(tmp_path / "s.toml", tiny_bert, sentiment_files, seeds=(1, 2))
    out = tmp_path / "out"
    assert main(["study", str(path), "--out", str(out), "--plan", "--blocks", "ablation"]) == 0
    planned = [line.split()[1] for line in capsys.readouterr().out.splitlines()[:-1]]
    assert planned == ["sent/n48/none/seed1", "sent/n48/isobn_bias_correction=false/seed1"]
    argv = ["study", str(path), "--out", str(out), "--blocks", "ablation", "--jobs", "2"]
    caplog.set_level(logging.INFO)
    assert main(argv) == 0
    assert sorted(r["method"] for r in finished_cells(out)) == [
        "isobn:bias_correction=false",
        "none",
    ]
    # two cells at once: each one's training bars went to its own file, not the shared stream
    for key in planned:
        assert "epoch 1/1" in (out / "runs" / key / "progress.log").read_text()
    assert "study: 2 of 2 cells finished, 0 running, 0 to do" in caplog.text
    assert main(["study", str(path), "--out", str(out), "--plan", "--blocks", "nope"]) == 2
    assert "unknown block 'nope'; " in capsys.readouterr().err


@pytest.mark.slow
def test_resume_runs_only_what_is_left_and_keeps_the_verdict(tmp_path, tiny_bert, sentiment_files):
    path = write_study(tmp_path / "s.toml", tiny_bert, sentiment_files, seeds=(1,))
    out = tmp_path / "out"
    study = load_study(path)
    run_jobs(study, out, max_cells=1)
    first = finished_cells(out)
    assert len(first) == 1
    # the record names its run directory relative to the study directory, never a machine path
    assert first[0]["config"]["out"] == f"runs/{study.cells()[0].key}"
    assert (out / first[0]["config"]["out"] / "config.json").is_file()
    first_cell = cell_path(out, study.cells()[0])
    stamp = first_cell.stat().st_mtime_ns
    run_jobs(study, out)
    assert len(finished_cells(out)) == 3
    assert first_cell.stat().st_mtime_ns == stamp  # finished cells are never rerun
    from isobn.study.results import write_study_results

    write_study_results(study, out)
    results = out / "RESULTS.md"
    text = results.read_text().replace("_Not written yet", "IsoBN did X._ _Not written yet")
    results.write_text(text)
    write_study_results(study, out)
    assert "IsoBN did X." in results.read_text()
    assert "over 2 recorded session(s) with --jobs 1" in results.read_text()
    assert "Cells finished: 3 of 3 planned." in results.read_text()
    # the same directory with other settings is refused, not mixed into one table
    changed = path.read_text().replace("epochs = 1", "epochs = 2")
    path.write_text(changed)
    with pytest.raises(UserError, match=r"other settings \(epochs 1 -> 2\)"):
        run_jobs(load_study(path), out)


def test_cell_record_without_the_new_settings_has_their_defaults(
    tmp_path, tiny_bert, sentiment_files
):
    """A cell recorded before adam_epsilon and drop_last existed was trained with their
    defaults: the same settings as a study that leaves them out, not as one that sets them."""
    from dataclasses import asdict

    from isobn.study.runner import check_study_directory

    path = write_study(tmp_path / "s.toml", tiny_bert, sentiment_files, seeds=(1,))
    study = load_study(path)
    out = tmp_path / "out"
    cell = study.cells()[0]
    config = asdict(study.config(cell, out=str(out / "runs" / cell.key)))
    del config["adam_epsilon"], config["drop_last"]
    record = {"task": cell.task, "size": cell.size, "method": cell.method, "seed": cell.seed}
    cell_path(out, cell).parent.mkdir(parents=True)
    cell_path(out, cell).write_text(json.dumps({**record, "config": config, "dev_score": 50.0}))
    (out / "study.toml").write_text(study.source + "# an earlier version of the file\n")
    check_study_directory(study, out)  # the same settings: accepted
    for setting, message in [
        ("drop_last = true", "drop_last False -> True"),
        ("adam_epsilon = 1e-6", "adam_epsilon 1e-08 -> 1e-06"),
    ]:
        path.write_text(study.source.replace("[train]\n", f"[train]\n{setting}\n"))
        with pytest.raises(UserError, match=message):
            check_study_directory(load_study(path), out)
    # settings that do not change a cell's result are free to change
    for setting in ('report_to = "tensorboard"', "eval_batch_size = 7", "log_every_steps = 3"):
        path.write_text(study.source.replace("[train]\n", f"[train]\n{setting}\n"))
        check_study_directory(load_study(path), out)


def test_offline_study_record_of_an_earlier_version_is_still_done(tmp_path, capsys):
    """A real cell of results/offline (an earlier version's record: the method as `norm` and
    isobn_* keys, no adam_epsilon, drop_last, name, report_to) still has the study's settings
    and counts as done."""
    from isobn.cli.main import main
    from isobn.study.runner import check_study_directory

    root = Path(__file__).parents[2]
    key = "mr/n500/none/seed1"
    record = json.loads((root / "results" / "offline" / "cells" / f"{key}.json").read_text())
    assert "adam_epsilon" not in record["config"] and "drop_last" not in record["config"]
    out = tmp_path / "offline"
    (out / "cells" / "mr" / "n500" / "none").mkdir(parents=True)
    (out / "cells" / f"{key}.json").write_text(json.dumps(record))
    study = load_study(root / "studies" / "offline.toml")
    (out / "study.toml").write_text(study.source + "# an earlier version of the file\n")
    check_study_directory(study, out)
    assert main(["study", str(root / "studies" / "offline.toml"), "--out", str(out), "--plan"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith("done")] == [
        line for line in lines if line.startswith(f"done  {key}  (")
    ]
    assert lines[-1] == f"{len(study.cells())} cells, 1 finished"


def test_bootstrap_interval_and_paired_statistics():
    assert stats.bootstrap_interval([1.0]) is None
    assert stats.bootstrap_interval([1.0, 2.0]) is None
    assert stats.bootstrap_interval([2.0, 2.0, 2.0]) == (2.0, 2.0)
    low, high = stats.bootstrap_interval(list(np.arange(10.0)))
    assert low < 4.5 < high and 2.0 < low and high < 7.0
    result = stats.paired({1: 80.0, 2: 82.0, 3: 81.0, 4: 79.0}, {1: 79.0, 2: 82.0, 3: 80.0, 5: 1.0})
    assert result["seeds"] == [1, 2, 3]
    assert result["diffs"] == [1.0, 0.0, 1.0]
    assert (result["wins"], result["ties"], result["losses"]) == (2, 1, 0)
    assert result["mean_diff"] == pytest.approx(2 / 3)
    assert stats.paired({1: 1.0}, {2: 1.0}) is None


def undefined_score_records() -> list[dict]:
    """stsb: `isobn` has seed 2's score undefined (NaN: constant dev targets); mr: only `none`."""

    def record(task, method, seed, score):
        return {
            "task": task,
            "size": 64,
            "method": method,
            "seed": seed,
            "dev_score": score,
            "test_score": score,
            "best_epoch": 1.0,
            "majority_dev_score": None,
        }

    nan = float("nan")
    return (
        [record("stsb", "none", seed, v) for seed, v in ((1, 80.0), (2, 81.0), (3, 82.0))]
        + [record("stsb", "isobn", seed, v) for seed, v in ((1, 79.0), (2, nan), (3, 83.0))]
        + [record("mr", "none", seed, v) for seed, v in ((1, 70.0), (2, 71.0), (3, 72.0))]
    )


def test_an_undefined_score_is_undefined_in_every_table_never_nan_or_dropped():
    from isobn.study import tables

    groups, methods = stats.group(undefined_score_records()), ["none", "isobn"]
    tables = {
        name: "\n".join(table(groups, methods))
        for name, table in [
            ("scores", tables.scores_table),
            ("paired", tables.paired_table),
            ("average", tables.average_table),
        ]
    }
    assert not any("nan" in text for text in tables.values())

    def row(name, start):
        return next(line for line in tables[name].splitlines() if line.startswith(start))

    # the median of {79, NaN, 83} is undefined, alone (no "± undefined" or "± 0.0" beside it)
    assert row("scores", "| stsb | 64 | `isobn` | 3 | undefined | undefined | undefined |")
    assert row("scores", "| stsb | 64 | `none` | 3 | 81.0 ± 1.0 |")
    # differences -1, NaN, +1: counted, the undefined one named, the mean and p undefined
    paired = "undefined | 1/0/1 (1 undefined) | undefined"
    assert row("paired", "| stsb | 64 | `isobn` | 3 |") == (
        f"| stsb | 64 | `isobn` | 3 | {paired} | {paired} |"
    )
    # mr has no `isobn` cell: its average over the tasks is missing ("-"), not undefined
    assert row("average", "| `isobn` |") == "| `isobn` | - | - |"
    assert row("average", "| `none` |") == "| `none` | 76.00 | 76.00 |"
    nan_interval = stats.bootstrap_interval([1.0, float("nan"), 2.0])
    assert np.isnan(nan_interval).all()


def test_failed_run_is_no_better_than_the_majority_class():
    assert stats.failed({"dev_score": 60.0, "majority_dev_score": 60.0})
    assert not stats.failed({"dev_score": 60.1, "majority_dev_score": 60.0})
    # a run predicting the majority class of mr's dev split: the record rounds the majority
    assert stats.failed({"dev_score": 57.803921568627445, "majority_dev_score": 57.8039})
    assert not stats.failed({"dev_score": 60.0, "majority_dev_score": None})


@pytest.mark.parametrize(("name", "cells"), [("offline", 145), ("glue", 80)])
def test_committed_study_files_validate_and_plan(name, cells):
    study = load_study(Path(__file__).parents[2] / "studies" / f"{name}.toml")
    planned = study.cells()
    assert len(planned) == cells
    assert len({c.key for c in planned}) == cells
    assert planned[0].method == "none" and planned[1].method == "isobn"  # paired from the start
    if name == "glue":
        assert {c.size for c in planned} == {None}
        cfg = study.config(planned[0], out="x")
        assert (cfg.model, cfg.batch_size, cfg.max_length) == ("bert-base-cased", 16, 256)
        assert (cfg.learning_rate, cfg.adam_epsilon, cfg.drop_last) == (5e-5, 1e-6, True)
        assert (cfg.weight_decay, cfg.warmup_ratio, cfg.epochs) == (0.0, 0.06, 10)
        assert cfg.max_grad_norm == 0.0 and isinstance(cfg.max_grad_norm, float)  # no clipping


def test_cells_of_one_task_share_their_tokenised_data(tmp_path, tiny_bert, sentiment_files):
    from isobn.study import runner

    study = load_study(write_study(tmp_path / "s.toml", tiny_bert, sentiment_files))
    runner._DATA.clear()
    cells = study.cells()
    first = runner.cell_data(study.config(cells[0], out="a"))
    assert runner.cell_data(study.config(cells[3], out="b")) is first  # other seed and method
    other = study.config(cells[0], out="c")
    other.max_length = 64
    assert runner.cell_data(other) is not first


def test_machine_names_the_cpu_model(monkeypatch):
    import platform

    from isobn.study.runner import cpu_model

    monkeypatch.setattr(platform, "processor", lambda: "")  # as on Linux
    lines = (
        Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
    )
    names = [line.partition(":")[2].strip() for line in lines if line.startswith("model name")]
    assert cpu_model() == (names[0] if names else "")
    monkeypatch.setattr(platform, "processor", lambda: "arm")
    assert cpu_model() == "arm"


def test_a_single_seed_has_no_spread_in_the_study_tables():
    from isobn.study.stats import summary
    from isobn.study.tables import median_std

    assert median_std(summary([75.0])) == "75.0"
    assert median_std(summary([70.0, 80.0])) == "75.0 ± 7.1"
