"""isobn study --backend ray on a real local Ray (ray.init(num_cpus=2), not local mode): the
same cells and records as the local runner, a killed worker's cell retried from its
checkpoint, a local runner on the same directory at the same time, one-line user errors."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray
from test_study import write_study

from isobn.errors import UserError
from isobn.study.ray_backend import TOKENS, RayOptions, run_on_ray
from isobn.study.runner import cell_path, finished_cells, run_jobs
from isobn.study.spec import load_study

ONE_THREAD = RayOptions(cpus_per_cell=1)  # the local reference runs with threads=1 too


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs for the module (its workers inherit this environment: offline
    hubs, the source tree on PYTHONPATH)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def main_block_study(path: Path, tiny_bert, files, seeds=(1,), methods=("none", "isobn"), **train):
    """The tiny study of test_study without its ablation block, `train` settings added."""
    epochs = train.pop("epochs", 1)
    write_study(path, tiny_bert, files, seeds=seeds, methods=methods, epochs=epochs)
    text = path.read_text()
    text = text[: text.index('[[block]]\nname = "ablation"')]
    settings = "".join(f"{key} = {value}\n" for key, value in train.items())
    path.write_text(text.replace("[train]\n", f"[train]\n{settings}"))
    return load_study(path)


def scores(out: Path) -> dict:
    return {
        f"{r['method']}/{r['seed']}": (r["dev"], r["test"], r["best_epoch"])
        for r in finished_cells(out)
    }


@pytest.mark.slow
def test_ray_runs_each_cell_once_with_the_local_runners_records(
    local_ray, tmp_path, tiny_bert, sentiment_files
):
    study = main_block_study(tmp_path / "s.toml", tiny_bert, sentiment_files)
    keys = [cell.key for cell in study.cells()]
    session = run_on_ray(study, tmp_path / "ray", ONE_THREAD)
    assert sorted(session["ran"]) == sorted(keys) and session["cells_finished"] == 2
    run_jobs(study, tmp_path / "local", threads=1)
    assert scores(tmp_path / "ray") == scores(tmp_path / "local")
    records = finished_cells(tmp_path / "ray")
    assert all(r["session"] for r in records)
    # the training bars went to the cells' own files; the token is gone
    for key in keys:
        assert "epoch 1/1" in (tmp_path / "ray" / "runs" / key / "progress.log").read_text()
    assert not list((tmp_path / "ray" / TOKENS).iterdir())
    sessions = [
        json.loads(x) for x in (tmp_path / "ray" / "sessions.jsonl").read_text().splitlines()
    ]
    assert sessions[0]["backend"] == "ray" and sessions[0]["jobs"] == 2
    # a second run finds nothing to do
    assert run_on_ray(study, tmp_path / "ray", ONE_THREAD)["ran"] == []


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_its_cell_resumes(
    local_ray, tmp_path, tiny_bert, sentiment_files
):
    """SIGKILL of the worker process once the cell wrote a checkpoint: Ray retries the task,
    which resumes from last/; the cell's metrics equal those of an uninterrupted run."""
    settings = {"epochs": 6, "save_every_steps": 2}
    study = main_block_study(
        tmp_path / "s.toml", tiny_bert, sentiment_files, methods=("isobn",), **settings
    )
    (cell,) = study.cells()
    out = tmp_path / "ray"
    lock, last = out / "locks" / f"{cell.key}.lock", out / "runs" / cell.key / "last"
    result: dict = {}
    driver = threading.Thread(
        target=lambda: result.update(run_on_ray(study, out, ONE_THREAD)), daemon=True
    )
    driver.start()
    deadline = time.monotonic() + 300
    while not (last.is_dir() and lock.is_file() and lock.read_text().strip()):
        assert time.monotonic() < deadline and driver.is_alive(), "no checkpoint was written"
        time.sleep(0.02)
    killed = int(lock.read_text().split()[1])
    assert killed != os.getpid()  # a Ray worker, not this process
    os.kill(killed, signal.SIGKILL)
    if cell_path(out, cell).is_file():
        pytest.fail("the cell finished before the kill; give it more epochs")
    driver.join(timeout=600)
    assert not driver.is_alive() and result["ran"] == [cell.key]
    assert int(lock.read_text().split()[1]) != killed  # another worker finished it
    log = (out / "runs" / cell.key / "progress.log").read_text()
    assert f"resuming {out / 'runs' / cell.key} at epoch" in log
    run_jobs(study, tmp_path / "local", threads=1)
    assert scores(out) == scores(tmp_path / "local")


@pytest.mark.slow
def test_a_local_runner_and_ray_share_a_directory_without_running_a_cell_twice(
    local_ray, tmp_path, tiny_bert, sentiment_files
):
    study = main_block_study(tmp_path / "s.toml", tiny_bert, sentiment_files, seeds=(1, 2))
    out = tmp_path / "out"
    local = subprocess.Popen(
        [sys.executable, "-m", "isobn.cli.main", "study", str(study.path), "--out", str(out)]
        + ["--max-cells", "1", "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Ray starts once the local runner holds a cell: on a loaded machine the runner's start-up
    # (imports) can outlast Ray's tiny cells, which would leave it none
    claimed = [out / "locks" / f"{cell.key}.lock" for cell in study.cells()]
    deadline = time.monotonic() + 300
    while not finished_cells(out) and not any(
        p.is_file() and p.read_text().strip() for p in claimed
    ):
        assert local.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    session = run_on_ray(study, out, ONE_THREAD)
    _, err = local.communicate(timeout=600)
    assert local.returncode == 0, err
    by_local = {line.split()[1] for line in err.splitlines() if line.startswith("[")}
    assert len(by_local) == 1 and by_local.isdisjoint(session["ran"])
    assert by_local | set(session["ran"]) == {cell.key for cell in study.cells()}
    assert len(finished_cells(out)) == 4


def test_a_user_error_is_one_line_and_not_retried(local_ray, tmp_path, tiny_bert, sentiment_files):
    """A size above the training set (bad data) fails in the worker: the study stops with the
    local runner's line, once, and no cell is written."""
    study = main_block_study(tmp_path / "s.toml", tiny_bert, sentiment_files)
    path = Path(study.path)
    path.write_text(path.read_text().replace("sizes = [48]", "sizes = [500]"))
    with pytest.raises(UserError) as error:
        run_on_ray(load_study(path), tmp_path / "out", ONE_THREAD)
    assert str(error.value).startswith("task sent has 96 training rows, fewer than the study's")
    assert not (tmp_path / "out" / "cells").exists()


def test_a_worker_that_cannot_see_the_directory_refuses(local_ray, tmp_path):
    """The token check: a directory without the driver's token (another node's view)."""
    from isobn.study.ray_backend import _cell_task

    result = ray.get(
        ray.remote(_cell_task).remote(None, "k", str(tmp_path), "0" * 32, "/", 1, "s", False)
    )
    assert result["status"] == "error"
    assert result["message"].endswith(
        f"cannot see the study directory {tmp_path}: put it on storage that every node mounts "
        "at the same path (NFS, a shared volume)"
    )


def test_ray_options_are_checked(local_ray, tmp_path, tiny_bert, sentiment_files, capsys):
    from isobn.cli.main import main

    study = main_block_study(tmp_path / "s.toml", tiny_bert, sentiment_files)
    base = ["study", str(study.path), "--out", str(tmp_path / "out")]
    cases = [
        (["--address", "auto"], "--address needs --backend ray"),
        (["--backend", "ray", "--jobs", "2"], "--jobs is for --backend local; with --backend"),
        (["--backend", "ray", "--gpus-per-cell", "1"], "--gpus-per-cell 1 but the Ray cluster"),
        (["--backend", "ray", "--cpus-per-cell", "3"], "--cpus-per-cell 3 exceeds the Ray"),
        (["--backend", "ray", "--gpus-per-cell", "1.5"], "a fraction must be below 1"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2
        (line,) = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
        assert message in line
    assert not (tmp_path / "out").exists()  # refused, the cluster's resources too, before binding


def test_without_ray_the_backend_names_the_extra(monkeypatch, tmp_path, tiny_bert, sentiment_files):
    from isobn.study.ray_backend import RAY_MISSING

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    study = main_block_study(tmp_path / "s.toml", tiny_bert, sentiment_files)
    with pytest.raises(UserError) as error:
        run_on_ray(study, tmp_path / "out", ONE_THREAD)
    assert str(error.value) == RAY_MISSING == "--backend ray needs Ray: pip install 'isobn[ray]'"
    assert not (tmp_path / "out").exists()  # refused before anything is written


@pytest.mark.slow
def test_ray_runs_a_grid_study_with_the_local_runners_records(
    local_ray, tmp_path, tiny_bert, sentiment_files
):
    from test_grid import metrics, write_grid_study

    study = load_study(write_grid_study(tmp_path / "s.toml", tiny_bert, sentiment_files, (1,)))
    keys = [cell.key for cell in study.cells()]
    assert len(keys) == 4 and all("/learning_rate=" in key for key in keys)
    assert sorted(run_on_ray(study, tmp_path / "ray", ONE_THREAD)["ran"]) == sorted(keys)
    run_jobs(study, tmp_path / "local", threads=1)
    assert metrics(tmp_path / "ray") == metrics(tmp_path / "local")
