"""Run a study's cells: one lock per cell, atomic results, resume, shards and parallel jobs.

Study directory:
    study.toml          the study file as first run (a changed file is refused, see below)
    cells/KEY.json      one finished cell: settings, dev/test metrics, isotropy, timings
    locks/KEY.lock      held (flock) by the process that runs the cell
    runs/KEY/           the cell's run directory while it trains (checkpoints are removed
                        when it finishes unless --keep-checkpoints)
    sessions.jsonl      per `isobn study` invocation: a line at its start (command, jobs,
                        machine) and one at its end (wall time, cells finished)

Every process walks the cells in order and runs each that is neither finished nor locked,
so any number of processes (`--jobs`, `--shard`, or two commands) share one directory
without running a cell twice; a killed process releases its locks, and the next one resumes
the cell from its last checkpoint.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import platform
import shutil
import signal
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path

from isobn.errors import UserError
from isobn.study.spec import Cell, Study, check_task_files
from isobn.training.checkpoint import write_json_atomically
from isobn.training.config import saved_settings

logger = logging.getLogger(__name__)

SESSION_VARIABLE = "ISOBN_STUDY_SESSION"
# TrainConfig fields that do not change a cell's result
_FREE_SETTINGS = {
    "out",
    "resume",
    "keep_last",
    "cpu",
    "log_every_steps",
    "eval_batch_size",
    "save_every_steps",
    "report_to",
}


def cell_path(out: Path, cell: Cell) -> Path:
    return out / "cells" / f"{cell.key}.json"


# what every reader of a cell record indexes
_RECORD_KEYS = ("task", "size", "method", "seed", "config", "dev_score")


def finished_cells(out: Path) -> list[dict]:
    """Every finished cell's record in the study directory; a damaged one (not a JSON object
    with _RECORD_KEYS) is a one-line UserError naming it."""
    from isobn.training import checkpoint as ckpt

    records = []
    for path in sorted((out / "cells").rglob("*.json")):
        try:
            record = ckpt.read_json(path)
            missing = [key for key in _RECORD_KEYS if key not in record]
            if missing:
                raise ckpt.DamagedFileError(path, f"is damaged (no {', '.join(missing)})")
        except ckpt.DamagedFileError as error:
            raise UserError(f"{error}; delete it to run that cell again") from None
        records.append(record)
    return records


@contextmanager
def cell_lock(out: Path, cell: Cell):
    """Yield True when this process holds the cell's lock, False when another one does."""
    path = out / "locks" / f"{cell.key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            handle.truncate(0)
            handle.write(f"{platform.node()} {os.getpid()}\n")
            handle.flush()
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_study_directory(study: Study, out: Path) -> None:
    """Bind the directory to the study: a finished cell trained with other settings, or a
    different study file, is refused rather than mixed into one table."""
    saved = out / "study.toml"
    if saved.is_file() and saved.read_text(encoding="utf-8") != study.source:
        for record in finished_cells(out):
            cell = Cell(record["task"], record["size"], record["method"], record["seed"])
            planned = asdict(study.config(cell, out=""))
            changed = [
                f"{k} {v!r} -> {planned.get(k)!r}"
                for k, v in saved_settings(record["config"]).items()  # missing: default
                if k not in _FREE_SETTINGS and k in planned and planned[k] != v
            ]
            if changed:
                raise UserError(
                    f"{out} holds cell {cell.key} trained with other settings "
                    f"({'; '.join(changed[:3])}): use another --out, or restore the study file"
                )
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.toml").write_text(study.source, encoding="utf-8")


def run_cell(study: Study, cell: Cell, out: Path, keep_checkpoints: bool = False) -> dict:
    """Train one cell (resuming its run directory) and write its record atomically."""
    from isobn.study.record import cell_record
    from isobn.training.train import train

    run_dir = out / "runs" / cell.key
    cfg = replace(study.config(cell, out=str(run_dir)), keep_last=keep_checkpoints)
    started = time.perf_counter()
    data = cell_data(cfg)
    rows = len(data.task.splits["train"])
    if cell.size is not None and rows < cell.size:  # the loader takes "at most" size rows
        raise UserError(
            f"task {cell.task} has {rows} training rows, fewer than the study's size "
            f'{cell.size}: use sizes up to {rows}, or "full", in {study.path}'
        )
    data_seconds = time.perf_counter() - started
    metrics = train(cfg, data)
    record = cell_record(cell, cfg, metrics, run_dir, time.perf_counter() - started)
    record["data_seconds"] = round(data_seconds, 3)
    cell_path(out, cell).parent.mkdir(parents=True, exist_ok=True)
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


def run_cells(
    study: Study,
    out: Path,
    shard: tuple[int, int] = (1, 1),
    keep_checkpoints: bool = False,
    max_cells: int | None = None,
    blocks: tuple[str, ...] | None = None,
) -> int:
    """Walk this shard's cells (of `blocks` only, when given), running each that is neither
    finished nor locked; returns the number of cells this process ran. `max_cells` stops
    after that many (tests, budgets)."""
    cells = study.cells(blocks)
    k, n = shard
    mine = [cell for i, cell in enumerate(cells) if i % n == k - 1]
    ran = 0
    for number, cell in enumerate(mine, 1):
        if max_cells is not None and ran >= max_cells:
            break
        if cell_path(out, cell).is_file():
            continue
        with cell_lock(out, cell) as held:
            if not held or cell_path(out, cell).is_file():
                continue
            logger.info("[%d/%d] %s (pid %d)", number, len(mine), cell.key, os.getpid())
            record = run_cell(study, cell, out, keep_checkpoints)
            ran += 1
            logger.info(
                "%s: dev %s, test %s, %.0f s",
                cell.key,
                _fmt(record["dev_score"]),
                _fmt(record["test_score"]),
                record["wall_seconds"],
            )
    return ran


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _worker(study_path: str, out: str, shard, keep, max_cells, blocks, threads, gpu) -> None:
    """Entry point of one job process (spawned: a fresh interpreter)."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from isobn.study.spec import load_study

    try:
        run_cells(load_study(study_path), Path(out), shard, keep, max_cells, blocks)
    except UserError as error:
        print(f"isobn study: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


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
    threads divided between them (one GPU each where GPUs exist). sessions.jsonl gets a line
    when the session starts and one when it ends (a killed session has only the first: its
    cells' `finished_at` bound it)."""
    import torch

    check_task_files(study)
    check_study_directory(study, out)
    gpus = torch.cuda.device_count()
    if gpus and jobs > gpus:
        raise UserError(f"--jobs {jobs} exceeds the {gpus} GPUs: use --jobs {gpus} or fewer")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = threads or max(1, (cores or 1) // jobs)
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
            "jobs": jobs,
            "threads_per_job": threads,
            "shard": f"{shard[0]}/{shard[1]}",
            "machine": machine_description(),
        },
    )
    try:
        if jobs == 1:
            torch.set_num_threads(threads)
            run_cells(study, out, shard, keep_checkpoints, max_cells, blocks)
        else:
            args = (study.path, str(out), shard, keep_checkpoints, max_cells, blocks, threads)
            _run_processes(args, jobs, gpus)
    finally:  # an interrupted session records its end too
        end = {
            "id": session_id,
            "wall_seconds": round(time.perf_counter() - started, 1),
            "cells_finished": len(finished_cells(out)) - before,
        }
        _append_session(out, end)
    return end


def _append_session(out: Path, entry: dict) -> None:
    with open(out / "sessions.jsonl", "a") as handle:
        handle.write(json.dumps(entry) + "\n")


def _run_processes(args: tuple, jobs: int, gpus: int) -> None:
    """Spawn `jobs` worker processes (fresh interpreters) on the same cells and wait for all;
    an interrupt or failure stops the others (their locks are released by the OS)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker, args=(*args, i if gpus else None)) for i in range(jobs)
    ]
    for worker in workers:
        worker.start()
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the workers too
    try:
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
