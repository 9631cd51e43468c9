"""Where a study's jobs run: threads divided between the jobs, GPUs shared, never more threads
than cores by default; the progress view's counts and ETA."""

import logging
import subprocess
import sys
import textwrap

import pytest

from isobn.errors import UserError
from isobn.study.placement import place_jobs
from isobn.study.progress import StudyProgress, cell_bars_to_file
from isobn.training import host_jobs
from isobn.training.host_jobs import share_of_cores


@pytest.mark.parametrize("cores", [1, 2, 3, 4, 16, 64])
def test_the_default_plan_never_oversubscribes(cores):
    for jobs in range(1, cores + 1):
        plan = place_jobs(jobs, cores, gpus=0)
        assert plan.jobs == jobs and plan.threads is None and plan.devices == (None,) * jobs
        for live in range(1, 4 * cores):  # the other commands on the host count too
            threads = share_of_cores(cores, live)
            assert threads >= 1 and (live * threads <= cores or threads == 1)
    with pytest.raises(UserError, match=f"--jobs {cores + 1} exceeds the {cores} CPU cores"):
        place_jobs(cores + 1, cores, gpus=0)


def test_twelve_shards_on_sixteen_cores_get_one_thread_each():
    """The smoke run's oversubscription: 12 commands with torch's default 16 threads each."""
    assert share_of_cores(16, 12) == 1 and share_of_cores(16, 4) == 4
    assert share_of_cores(16, 1) == 16 and share_of_cores(16, 0) == 16


def test_several_jobs_share_one_gpu():
    assert place_jobs(4, 16, gpus=1).devices == (0, 0, 0, 0)
    assert place_jobs(4, 16, gpus=2).devices == (0, 1, 0, 1)
    assert place_jobs(1, 16, gpus=8).devices == (0,)


def test_explicit_threads_are_kept_with_a_warning_when_they_oversubscribe(caplog):
    with caplog.at_level(logging.WARNING):
        assert place_jobs(2, 4, gpus=0, threads=2).threads == 2
        assert not caplog.records
        assert place_jobs(3, 4, gpus=0, threads=2).threads == 2
    assert "--jobs 3 x --threads 2 = 6 threads on 4 cores" in caplog.text


def test_live_jobs_counts_every_process_on_the_host(tmp_path, monkeypatch):
    """Entries held by this process and by another live process count; a dead process's
    entry is stale and removed."""
    monkeypatch.setattr(host_jobs, "host_jobs_dir", lambda: tmp_path / "jobs")
    assert host_jobs.live_jobs() == 0
    with host_jobs.registered_jobs(2):
        assert host_jobs.live_jobs() == 2
        other = subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(f"""
                import sys, pathlib
                from isobn.training import host_jobs
                host_jobs.host_jobs_dir = lambda: pathlib.Path({str(tmp_path / "jobs")!r})
                with host_jobs.registered_jobs(3):
                    print("ready", flush=True)
                    sys.stdin.readline()
                """),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert other.stdout.readline().strip() == "ready"
        assert host_jobs.live_jobs() == 5
        assert host_jobs.cell_threads(None, cores=10) == 2 and host_jobs.cell_threads(3) == 3
        other.kill()  # its locks are released by the OS; its files stay behind
        other.wait()
        assert len(list((tmp_path / "jobs").glob("*.job"))) == 5
        assert host_jobs.live_jobs() == 2
        assert len(list((tmp_path / "jobs").glob("*.job"))) == 2
    assert host_jobs.live_jobs() == 0 and not list((tmp_path / "jobs").iterdir())


def test_progress_counts_and_eta():
    progress = StudyProgress(total=10, finished=2, slots=2)
    assert progress.line() == "study: 2 of 10 cells finished, 0 running, 8 to do"
    progress.started("a")
    progress.started("b")
    assert progress.eta_seconds() is None  # nothing finished in this session yet
    progress.done("a", 100.0)
    progress.event("skipped", "c")  # another process has it
    progress.event("started", "d")
    # 2 running (b, d), 10 - 3 - 2 - 1 = 4 to do: 100 s x 6 cells / 2 slots
    assert progress.to_do == 4 and progress.eta_seconds() == 300.0
    assert progress.line() == (
        "study: 3 of 10 cells finished, 2 running, 4 to do, 1 run by another process; ETA 0:05:00"
    )
    progress.event("skipped", "b")  # a sibling job of this session runs it: still running
    assert progress.to_do == 4 and progress.elsewhere == {"c"}
    progress.event("stopped", "d")  # interrupted: to do again
    assert progress.to_do == 5 and len(progress.running) == 1
    progress.event("skipped", "e")  # a sibling's skip before its start arrives
    progress.event("started", "e")
    progress.event("done", "e", 100.0)
    progress.event("skipped", "e")  # a sibling found it finished
    assert progress.elsewhere == {"c"} and progress.finished == 4 and progress.to_do == 4


def test_cell_bars_go_to_the_cells_log_file(tmp_path):
    from tqdm.auto import tqdm

    before = sys.stderr
    with cell_bars_to_file(tmp_path / "runs" / "k", enabled=True):
        for _ in tqdm(range(3), desc="epoch 1/1"):
            pass
        print("a warning", file=sys.stderr)
    text = (tmp_path / "runs" / "k" / "progress.log").read_text()
    assert "epoch 1/1" in text and "3/3" in text and "a warning" in text
    assert sys.stderr is before
    with cell_bars_to_file(tmp_path / "runs" / "j", enabled=False):
        pass
    assert not (tmp_path / "runs" / "j").exists()
