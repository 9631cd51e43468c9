"""A study directory belongs to one study file: its settings, its cells, its data.

bind_study_directory   before the first cell runs, under a lock: the directory's
                       study.toml and finished cells must have this file's settings and
                       data (check_directory_settings, which runners also call first, read
                       only), then study.toml becomes this file (atomically)
check_inputs           before anything is written: the models and the tasks' data are
                       there, and every planned cell's size fits its task's training set
sort_records           finished cells split into those the file declares, trained with
                       its settings and data (tabled), and the rest (listed apart)
cell_states            what --plan says of each cell: todo, done, or stale (and why), by
                       the same check as sort_records
"""

from __future__ import annotations

import fcntl
from dataclasses import asdict
from pathlib import Path

from isobn.errors import UserError
from isobn.study.record import finished_cells
from isobn.study.spec import Cell, Study
from isobn.training.config import saved_settings
from isobn.training.fingerprint import fingerprint_changes
from isobn.training.safe_files import make_folder, open_for_update, write_atomically

STUDY_FILE = "study.toml"
# TrainConfig fields that do not change a cell's result
FREE_SETTINGS = {
    "out",
    "resume",
    "cpu",
    "keep_last",
    "log_every_steps",
    "eval_batch_size",
    "save_every_steps",
    "report_to",
}


def record_cell(record: dict) -> Cell:
    """The cell of a record; a record without "grid" (no grid, or written before grids) has
    the empty grid point."""
    grid = tuple(sorted((record.get("grid") or {}).items()))
    return Cell(record["task"], record["size"], record["method"], record["seed"], grid)


def settings_changes(study: Study, record: dict) -> list[str]:
    """`name recorded -> planned` for each setting of a finished cell's record that differs
    from what `study` plans for that cell (a setting the record lacks is at its default)."""
    planned = asdict(study.config(record_cell(record), out=""))
    return [
        f"{k} {v!r} -> {planned.get(k)!r}"
        for k, v in saved_settings(record["config"]).items()
        if k not in FREE_SETTINGS and k in planned and planned[k] != v
    ]


def data_changes(study: Study, record: dict) -> list[str]:
    """The input files of a finished cell that changed since it trained on them."""
    return fingerprint_changes(record.get("fingerprints"), study.config(record_cell(record), ""))


def bind_study_directory(study: Study, out: Path) -> None:
    """Bind `out` to `study` before any cell runs, atomically (one process at a time, under
    OUT/locks/study.lock): a study.toml there of another file whose tasks have other settings,
    or a finished cell of other settings or data, is refused with one line; then study.toml
    is replaced by this file's text."""
    with open_for_update(make_folder(out, "locks") / "study.lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        check_directory_settings(study, out)
        write_atomically(out / STUDY_FILE, study.source)


def check_directory_settings(study: Study, out: Path) -> None:
    """What bind_study_directory refuses, read only (nothing is written): a study.toml in `out`
    of another file whose tasks have other settings, or a finished cell of other settings or
    data. Runners call it first, so that such a directory is refused before any input loads."""
    saved = out / STUDY_FILE
    if saved.is_file() and not saved.is_symlink():
        text = saved.read_text(encoding="utf-8", errors="replace")
        if text != study.source:
            _check_same_settings(study, text, out)
    check_finished_cells(study, out)


def _check_same_settings(study: Study, saved_text: str, out: Path) -> None:
    """The settings of every task that `study` and the directory's study.toml share."""
    from isobn.study.spec import parse_study

    try:
        saved = parse_study(saved_text, out / STUDY_FILE)
    except UserError:
        return  # a file of an earlier version: its finished cells are still checked
    tasks = {c.task for c in saved.cells()} & {c.task for c in study.cells()}
    for task in sorted(tasks):
        probe = Cell(task, None, "none", 0)
        ours, theirs = asdict(study.config(probe, "")), asdict(saved.config(probe, ""))
        changed = [
            f"{k} {theirs[k]!r} -> {ours[k]!r}"
            for k in ours
            if k not in FREE_SETTINGS and ours[k] != theirs.get(k)
        ]
        if changed:
            raise UserError(
                f"{out} belongs to another study file ({out / STUDY_FILE}), whose task {task} "
                f"has other settings ({'; '.join(changed[:3])}): use another --out, or run "
                "that study file"
            )


def check_finished_cells(study: Study, out: Path) -> None:
    """Every finished cell that `study` declares was trained with its settings and data."""
    declared = {cell.key for cell in study.cells()}
    for record in finished_cells(out):
        cell = record_cell(record)
        if cell.key not in declared:
            continue  # listed apart in the results, never tabled
        changed = settings_changes(study, record)
        if changed:
            fix = "use another --out, or restore the study file"
            if any(change.startswith("data_dir ") for change in changed):
                fix = "pass the --data-dir it trained on (GLUE files), or use another --out"
            raise UserError(
                f"{out} holds cell {cell.key} trained with other settings "
                f"({'; '.join(changed[:3])}): {fix}"
            )
        files = data_changes(study, record)
        if files:
            raise UserError(
                f"{out} holds cell {cell.key} trained on other data: {', '.join(files)} "
                "changed since (its content differs): use another --out to train on the "
                "files as they are, or restore them"
            )


def sort_records(study: Study, records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(records to table, records apart): a record is tabled when `study` declares its cell
    and it was trained with the study's settings and data (files that are gone are not
    judged); every other record is apart, as {"cell", "reason"}."""
    declared = {cell.key for cell in study.cells()}
    tabled, apart = [], []
    for record in records:
        key = record_cell(record).key
        if key not in declared:
            reason = "not declared by the study file"
        elif settings_changes(study, record):
            reason = "trained with other settings: " + "; ".join(settings_changes(study, record))
        elif data_changes(study, record):
            reason = "trained on other data: " + ", ".join(data_changes(study, record))
        else:
            tabled.append(record)
            continue
        apart.append({"cell": key, "reason": reason})
    return tabled, apart


def cell_states(study: Study, out: Path, cells: list[Cell]) -> dict[str, str]:
    """Cell key -> "todo" (no finished record), "done" (finished with the study's settings
    and data) or "stale: REASON" (finished on other settings or data: `sort_records`'
    reason; a run refuses such a cell, --report-only lists it apart)."""
    records = {record_cell(r).key: r for r in finished_cells(out)}
    _, apart = sort_records(study, list(records.values()))
    reasons = {entry["cell"]: entry["reason"] for entry in apart}
    states = {}
    for cell in cells:
        if cell.key not in records:
            states[cell.key] = "todo"
        else:
            reason = reasons.get(cell.key)
            states[cell.key] = "done" if reason is None else f"stale: {reason}"
    return states


def check_inputs(study: Study, cells: list[Cell]) -> None:
    """What `cells` train on is there, checked before anything is written to the study
    directory (a study that cannot start leaves --out as it was), local inputs before remote
    ones as in isobn train: the data on this machine loads, every model loads from disk, the
    Hugging Face cache or the hub (training.pretrained.resolve_model_path), the hub's data
    loads; and every cell's size fits its task's training set (the loader takes "at most"
    size rows: a cell named n500 trained on 96 rows would be mislabelled)."""
    from isobn.training.build import data_is_local
    from isobn.training.pretrained import resolve_model_path

    sizes: dict[str, set[int]] = {}  # each task's sizes (no "full": it samples nothing)
    for cell in cells:
        sizes.setdefault(cell.task, set()).update([cell.size] if cell.size else [])
    configs = {task: study.config(Cell(task, None, "none", 0), out="") for task in sizes}
    remote = [task for task, cfg in configs.items() if not data_is_local(cfg)]
    for task in [task for task in sizes if task not in remote]:
        _check_task_rows(study, task, configs[task], sizes[task])
    for model in sorted({cfg.model for cfg in configs.values()}):
        resolve_model_path(model)
    _check_poolings(cells, study)
    for task in remote:
        _check_task_rows(study, task, configs[task], sizes[task])


def _check_poolings(cells: list[Cell], study: Study) -> None:
    """Each model can be pooled as its cells ask, as `isobn train` checks it before training:
    no encoder-decoder, no cls or pooler on a causal decoder, no pooler where there is none
    (a cell would be refused after the study directory was bound)."""
    from isobn.training.pooling import check_pooler
    from isobn.training.pretrained import load_encoder_config

    wanted = set()
    for cell in cells:
        cfg = study.config(cell, out="")
        wanted.add((cfg.model, cfg.pooling, cfg.trust_remote_code))
    for model, pooling, trust_remote_code in sorted(wanted):
        try:
            check_pooler(load_encoder_config(model, trust_remote_code), pooling)
        except UserError as error:
            raise UserError(f"{study.path}: {error}") from None


def _check_task_rows(study: Study, task: str, cfg, sizes: set[int]) -> None:
    """The study's `task` (settings `cfg`) loads, has at least its largest size of training
    rows, and each size's training sample teaches something: what isobn.tasks.checks refuses
    in a cell is refused here, and what it warns about is said here once (the cells, which
    load the same samples, keep quiet: isobn.study.runner.run_cell)."""
    from dataclasses import replace

    from isobn.tasks.checks import SampleLimit, check_training_sample
    from isobn.tasks.sampling import subsample
    from isobn.training.config import load_run_task

    loaded = load_run_task(cfg)
    full = loaded.splits["train"]
    rows = len(full)
    if rows < max(sizes, default=0):
        raise UserError(
            f"task {task} has {rows} training rows, fewer than the study's size "
            f'{max(sizes)}: use sizes up to {rows}, or "full", in {study.path}'
        )
    for size in sorted(sizes):
        train = subsample(full, size, 0, loaded.regression)  # a cell's sample: load_run_task
        sample = replace(loaded, splits={**loaded.splits, "train": train})
        limit = SampleLimit(f"size {size}", f"use a larger size in {study.path}")
        check_training_sample(sample, full, limit, f"{study.path}: task {task}")


__all__ = [
    "bind_study_directory",
    "check_finished_cells",
    "check_directory_settings",
    "check_inputs",
    "settings_changes",
    "sort_records",
]
