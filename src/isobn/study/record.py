"""What a finished cell leaves: one flat JSON record with everything the tables need."""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from isobn.errors import UserError
from isobn.study.spec import Cell

# isotropy keys kept per evaluation (of the dev pooled embedding, before and after the norm)
ISOTROPY_KEYS = ("std_cv", "mean_abs_corr", "isoscore", "effective_rank")


def cell_path(out: Path, cell: Cell) -> Path:
    return out / "cells" / f"{cell.key}.json"


def run_path(cell: Cell) -> Path:
    """The cell's run directory, relative to the study directory."""
    return Path("runs", cell.key)


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


def cell_record(
    cell: Cell, cfg, metrics: dict, run_dir: Path, wall_seconds: float, task=None
) -> dict:
    """The record of a finished cell: identity, settings, scores (x 100), best epoch,
    evaluation history with isotropy, majority-class dev score and timings. `task`: the
    cell's loaded task (else it is loaded again, once per process)."""
    evaluations = _evaluations(run_dir / "log.jsonl")
    best = next((e for e in evaluations if e["epoch"] == metrics["best_epoch"]), None)
    main = metrics["main_metric"]
    sizes, majority = task_facts(cfg, task)
    return {
        "task": cell.task,
        "size": cell.size,
        "method": cell.method,
        "seed": cell.seed,
        **({"grid": dict(cell.grid)} if cell.grid else {}),  # no key without a grid
        "blocks": list(cell.blocks),
        "main_metric": main,
        "dev_score": _score(metrics.get("dev"), main),
        "test_score": _score(metrics.get("test"), main),
        "dev": metrics.get("dev"),
        "test": metrics.get("test"),
        "majority_dev_score": majority,
        "best_epoch": metrics["best_epoch"],
        "epochs_run": evaluations[-1]["epoch"] if evaluations else None,
        "stopped_early": metrics["stopped_early"],
        "isotropy_at_best": best["isotropy"] if best else {},
        "evaluations": evaluations,
        "split_sizes": sizes,
        "train_seconds": metrics["train_seconds"],
        "wall_seconds": round(wall_seconds, 2),
        "finished_at": time.time(),
        "session": os.environ.get("ISOBN_STUDY_SESSION"),
        "train_samples_per_second": metrics["train_samples_per_second"],
        # out relative to the study directory: a record names no machine's paths
        "config": {**asdict(cfg), "out": str(run_path(cell))},
        "fingerprints": _fingerprints(run_dir, cfg),
    }


def _fingerprints(run_dir: Path, cfg) -> dict[str, str]:
    """The input fingerprints the cell trained on: its run's config.json's, written when it
    started (and checked on every resume)."""
    from isobn.training import checkpoint as ckpt
    from isobn.training.fingerprint import input_fingerprints

    try:
        saved = ckpt.read_json(run_dir / "config.json").get("fingerprints")
    except ckpt.DamagedFileError:
        saved = None
    return saved if isinstance(saved, dict) else input_fingerprints(cfg)


def _score(values: dict | None, main: str) -> float | None:
    if not values or values.get(main) is None:
        return None
    return 100.0 * float(values[main])


def _evaluations(log_path: Path) -> list[dict]:
    """Dev metrics and the isotropy summary of every evaluation in a run's log."""
    from isobn.training.runs import read_log

    rows = []
    for entry in read_log(log_path):
        if "dev" not in entry:
            continue
        iso = {
            side: {k: report.get(k) for k in ISOTROPY_KEYS}
            for side, report in (entry.get("isotropy") or {}).items()
        }
        rows.append(
            {"step": entry["step"], "epoch": entry["epoch"], "dev": entry["dev"], "isotropy": iso}
        )
    return rows


def task_facts(cfg, task=None) -> tuple[dict[str, int], float | None]:
    """Split sizes and the dev main metric (x 100) of predicting the majority training class
    (None for regression): a run no better than that has failed (Mosbach et al., 2021).
    `task`: the config's task, loaded already (else loaded here, once per process)."""
    key = (
        cfg.task,
        cfg.data_dir,
        cfg.train_file,
        cfg.dev_file,
        cfg.test_file,
        cfg.text_column,
        cfg.text_pair_column,
        cfg.label_column,
        cfg.regression,
        cfg.max_train,
        cfg.max_eval,
    )
    if key not in _FACTS:
        _FACTS[key] = _task_facts(task if task is not None else _load_task(cfg))
    return _FACTS[key]


_FACTS: dict[tuple, tuple[dict[str, int], float | None]] = {}  # per process: loads once


def _load_task(cfg):
    from isobn.training.train import load_run_task

    return load_run_task(cfg)


def _task_facts(task) -> tuple[dict[str, int], float | None]:
    sizes = {name: len(rows) for name, rows in task.splits.items()}
    if task.regression:
        return sizes, None
    train_labels = np.array([e.label for e in task.splits["train"]])
    majority = np.bincount(train_labels, minlength=task.num_labels).argmax()
    outputs = {}
    for split in task.dev_splits:
        labels = np.array([e.label for e in task.splits[split]])
        outputs[split] = (np.full_like(labels, majority), labels)
    score = task.score(outputs)[task.main_metric]
    return sizes, round(100.0 * float(score), 4)
