"""Run a study's cells: one lock per cell, atomic results, resume, shards and parallel jobs.

Study directory:
    study.toml          the study file as first run (a changed file is refused, see below)
    cells/KEY.json      one finished cell: settings, dev/test metrics, isotropy, timings
    locks/KEY.lock      held (flock) by the process that runs the cell
    runs/KEY/           the cell's run directory while it trains (checkpoints are removed
                        when it finishes unless --keep-checkpoints); progress.log holds its
                        training bars when several cells run at once
    ray-tokens/TOKEN    while a Ray driver runs (ray_backend): proves a worker sees DIR
    sessions.jsonl      per `isobn study` invocation: a line at its start (command, jobs,
                        machine) and one at its end (wall time, cells finished)

Every process walks the cells in order and runs each that is neither finished nor locked,
so any number of processes (`--jobs`, `--shard`, or two commands) share one directory
without running a cell twice; a killed process releases its locks, and the next one resumes
the cell from its last checkpoint. The Ray runner (ray_backend) runs the same cell function,
try_cell, in Ray tasks; placement divides the CPU threads and GPUs between jobs.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import platform
import shutil
import signal
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from isobn import json_text
from isobn.errors import UserError
from isobn.study.record import cell_path, finished_cells, run_path
from isobn.study.spec import Cell, Study, check_task_files
from isobn.study.tables import number_text
from isobn.training.disk_full import DiskFullError, disk_full_problem, writing
from isobn.training.safe_files import (
    append_line,
    make_folder,
    open_for_update,
    write_json_atomically,
)

logger = logging.getLogger(__name__)

SESSION_VARIABLE = "ISOBN_STUDY_SESSION"


@contextmanager
def cell_lock(out: Path, cell: Cell):
    """Yield True when this process holds the cell's lock, False when another one does."""
    path = make_folder(out, Path("locks", cell.key).parent) / f"{Path(cell.key).name}.lock"
    with open_for_update(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            with writing(path):
                handle.truncate(0)
                handle.write(f"{platform.node()} {os.getpid()}\n")
                handle.flush()
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def start_study(study: Study, out: Path, blocks: tuple[str, ...] | None = None) -> None:
    """Everything checked before a runner's first cell, local inputs first and nothing
    written to `out`: the task files, `out`'s settings (read only), the models and data of
    the unfinished cells (of `blocks`). The runner binds `out` (check_study_directory, the
    first write to it) once its own checks passed too, so a refused command leaves no `out`."""
    from isobn.study.binding import check_directory_settings, check_inputs

    check_task_files(study)
    check_directory_settings(study, out)
    check_inputs(study, [c for c in study.cells(blocks) if not cell_path(out, c).is_file()])


def check_study_directory(study: Study, out: Path) -> None:
    """Bind the directory to the study (isobn.study.binding): another study file's settings,
    or a finished cell trained with other settings or data, is refused rather than mixed
    into one table."""
    from isobn.study.binding import bind_study_directory

    bind_study_directory(study, out)


def run_cell(study: Study, cell: Cell, out: Path, keep_checkpoints: bool = False) -> dict:
    """Train one cell (resuming its run directory) and write its record atomically."""
    from isobn.study.record import cell_record
    from isobn.tasks.checks import quiet
    from isobn.training.train import train

    run_dir = make_folder(out, run_path(cell))
    cfg = replace(study.config(cell, out=str(run_dir)), keep_last=keep_checkpoints)
    started = time.perf_counter()
    with quiet():  # its data's warnings: said once by the study's check (start_study)
        data = cell_data(cfg)
    rows = len(data.task.splits["train"])
    if cell.size is not None and rows < cell.size:  # the loader takes "at most" size rows
        raise UserError(
            f"task {cell.task} has {rows} training rows, fewer than the study's size "
            f'{cell.size}: use sizes up to {rows}, or "full", in {study.path}'
        )
    data_seconds = time.perf_counter() - started
    metrics = train(cfg, data)
    seconds = time.perf_counter() - started
    record = cell_record(cell, cfg, metrics, run_dir, seconds, data.task)
    record["data_seconds"] = round(data_seconds, 3)
    make_folder(out, Path("cells", cell.key).parent)
    write_json_atomically(cell_path(out, cell), record)
    if not keep_checkpoints:
        for name in ("best", "last", "best.old", "last.old"):
            shutil.rmtree(run_dir / name, ignore_errors=True)
    return record


_DATA: dict[tuple, object] = {}  # per process: tokenised splits, newest last
_DATA_KEPT = 8  # a study's tasks x sizes; splits of short texts are a few MB each


def cell_data(cfg):
    """The tokenised task of a cell, made once per (task, size, model, max length) in this
    process and reused by its other seeds and methods."""
    from dataclasses import fields

    from isobn.training.build import load_data
    from isobn.training.config import DataOptions

    names = [f.name for f in fields(DataOptions)] + ["model", "max_length", "trust_remote_code"]
    key = tuple(getattr(cfg, name) for name in names)
    data = _DATA.pop(key, None) or load_data(cfg)
    _DATA[key] = data
    while len(_DATA) > _DATA_KEPT:
        _DATA.pop(next(iter(_DATA)))
    return data


def shard_cells(study: Study, shard: tuple[int, int], blocks: tuple[str, ...] | None) -> list:
    """The cells of shard K/N (of `blocks` only, when given), in running order."""
    k, n = shard
    return [cell for i, cell in enumerate(study.cells(blocks)) if i % n == k - 1]


def try_cell(
    study: Study,
    cell: Cell,
    out: Path,
    keep_checkpoints: bool = False,
    on_start=None,
    bars_to_file: bool = False,
) -> dict | None:
    """Run the cell under its lock unless it is finished or another process holds it (then
    None): the one cell function of every runner, local or Ray. `on_start()` is called once the
    lock is held; with `bars_to_file` the training bars go to DIR/runs/KEY/progress.log."""
    from isobn.study.progress import cell_bars_to_file

    if cell_path(out, cell).is_file():
        return None
    with cell_lock(out, cell) as held:
        if not held or cell_path(out, cell).is_file():
            return None
        if on_start is not None:
            on_start()
        with cell_bars_to_file(out / run_path(cell), bars_to_file):
            return run_cell(study, cell, out, keep_checkpoints)


def run_cells(
    study: Study,
    out: Path,
    shard: tuple[int, int] = (1, 1),
    keep_checkpoints: bool = False,
    max_cells: int | None = None,
    blocks: tuple[str, ...] | None = None,
    threads: int | None = None,
    events=None,
    bars_to_file: bool = False,
) -> int:
    """Walk this shard's cells (of `blocks` only, when given), running each that is neither
    finished nor locked; returns the number of cells this process ran. `max_cells` stops
    after that many (tests, budgets). Before each cell, torch gets `threads` threads (None:
    this host's share of the cores, see placement). `events(kind, key, seconds)` hears of
    each cell: started, done, skipped (another process has it) or stopped."""
    from isobn.training.host_jobs import cell_threads, use_threads

    mine = shard_cells(study, shard, blocks)
    ran = 0
    for number, cell in enumerate(mine, 1):
        if max_cells is not None and ran >= max_cells:
            break
        if cell_path(out, cell).is_file():
            continue

        def start(number=number, cell=cell):
            use_threads(cell_threads(threads))
            logger.info("[%d/%d] %s (pid %d)", number, len(mine), cell.key, os.getpid())
            if events is not None:
                events("started", cell.key)

        try:
            record = try_cell(study, cell, out, keep_checkpoints, start, bars_to_file)
        except BaseException:
            if events is not None:
                events("stopped", cell.key)
            raise
        if record is None:
            if events is not None:
                events("skipped", cell.key)
            continue
        ran += 1
        logger.info(
            "%s: dev %s, test %s, %.0f s",
            cell.key,
            number_text(record["dev_score"], 2),
            number_text(record["test_score"], 2),
            record["wall_seconds"],
        )
        if events is not None:
            events("done", cell.key, record["wall_seconds"])
    return ran


def _worker(study: Study, out: str, shard, keep, max_cells, blocks, threads, events, gpu) -> None:
    """Entry point of one job process (spawned: a fresh interpreter, given the parent's study
    with its command-line settings, e.g. --data-dir); `events` a queue to the parent's
    progress view."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    def send(kind: str, key: str, seconds: float = 0.0) -> None:
        events.put((kind, key, seconds))

    try:
        run_cells(study, Path(out), shard, keep, max_cells, blocks, threads, send, True)
    except UserError as error:
        print(f"isobn study: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as error:
        problem = disk_full_problem(error, out)
        if problem is None:
            raise
        print(f"isobn study: error: {problem}", file=sys.stderr)
        sys.exit(2)


def run_jobs(
    study: Study,
    out: Path,
    jobs: int = 1,
    shard: tuple[int, int] = (1, 1),
    keep_checkpoints: bool = False,
    max_cells: int | None = None,
    threads: int | None = None,
    command: str = "",
    blocks: tuple[str, ...] | None = None,
) -> dict:
    """Run the study's cells (of `blocks` only, when given) with `jobs` processes, the CPU
    threads divided between them and the GPUs shared round-robin (see placement).
    sessions.jsonl gets a line when the session starts and one when it ends (a killed session
    has only the first: its cells' `finished_at` bound it)."""
    import torch

    from isobn.study.placement import place_jobs
    from isobn.training.host_jobs import cell_threads, registered_jobs, usable_cores

    start_study(study, out, blocks)
    placement = place_jobs(jobs, usable_cores(), torch.cuda.device_count(), threads)
    check_study_directory(study, out)  # the first write to `out`, once all checks passed

    def body(progress) -> None:
        if jobs == 1:
            run_cells(
                study,
                out,
                shard,
                keep_checkpoints,
                max_cells,
                blocks,
                placement.threads,
                progress.event,
            )
        else:
            args = (study, str(out), shard, keep_checkpoints, max_cells, blocks)
            _run_processes(args, placement, progress)

    with registered_jobs(jobs):
        details = {"jobs": jobs, "threads_per_job": cell_threads(placement.threads)}
        return run_session(study, out, body, details, command, shard, blocks)


def run_session(
    study: Study,
    out: Path,
    body,
    details: dict,
    command: str = "",
    shard: tuple[int, int] = (1, 1),
    blocks: tuple[str, ...] | None = None,
    machine: str | None = None,
) -> dict:
    """Run `body(progress)` (a runner) as one recorded session: sessions.jsonl gets a line
    with `details` (jobs, ...) at the start and one at the end, and the cells it writes name
    the session. Returns the end line (wall time, cells finished)."""
    from isobn.study.progress import StudyProgress

    before = len(finished_cells(out))
    started, start_time = time.perf_counter(), time.time()
    session_id = f"{platform.node()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"  # unique per call
    os.environ[SESSION_VARIABLE] = session_id  # read by cell_record, inherited by workers
    _append_session(
        out,
        {
            "id": session_id,
            "start": start_time,
            "command": command,
            **details,
            "shard": f"{shard[0]}/{shard[1]}",
            "machine": machine or machine_description(),
        },
    )
    mine = shard_cells(study, shard, blocks)
    done = sum(cell_path(out, cell).is_file() for cell in mine)
    try:
        body(StudyProgress(len(mine), done, details.get("jobs", 1)))
    except BaseException:  # an interrupted or failed session records its end too, but a
        # full disk there does not hide what stopped it (the first file that did not fit)
        with contextlib.suppress(DiskFullError):
            _append_session(out, _session_end(session_id, started, out, before))
        raise
    end = _session_end(session_id, started, out, before)
    _append_session(out, end)
    return end


def _session_end(session_id: str, started: float, out: Path, before: int) -> dict:
    """The end line of a session: its wall time and the cells it finished."""
    return {
        "id": session_id,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "cells_finished": len(finished_cells(out)) - before,
    }


def _append_session(out: Path, entry: dict) -> None:
    append_line(out / "sessions.jsonl", json_text.dumps(entry))


def _run_processes(args: tuple, placement, progress) -> None:
    """Spawn a worker process (a fresh interpreter) per job on the same cells, each on its
    planned device, and wait for all while showing their progress; an interrupt or failure
    stops the others (their locks are released by the OS)."""
    import multiprocessing
    import queue

    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    jobs = placement.jobs
    workers = [
        context.Process(target=_worker, args=(*args, placement.threads, events, device))
        for device in placement.devices
    ]
    for worker in workers:
        worker.start()
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the workers too
    try:
        while any(worker.is_alive() for worker in workers) or not events.empty():
            try:
                progress.event(*events.get(timeout=0.5))
            except queue.Empty:
                continue
        for worker in workers:
            worker.join()
    finally:
        signal.signal(signal.SIGTERM, previous)
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
                worker.join()
    failed = [w.exitcode for w in workers if w.exitcode not in (0, None)]
    if failed:
        raise UserError(
            f"{len(failed)} of {jobs} jobs failed (exit {failed[0]}); "
            "see their messages above, then rerun to resume"
        )


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def machine_description() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.machine()} CPU, {cores} cores ({cpu_model() or 'model unknown'})"


def cpu_model() -> str:
    """The CPU's model name: platform.processor(), which is empty on Linux, else the first
    "model name" line of /proc/cpuinfo; "" when neither says."""
    if platform.processor():
        return platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return ""
