"""results.json / results.csv (one row per finished cell) and RESULTS.md of a study."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from isobn.study.runner import finished_cells
from isobn.study.spec import Study
from isobn.training.safe_files import all_or_none, replaced_atomically, write_json_atomically

logger = logging.getLogger(__name__)

# flat columns of results.csv, in order; metric dicts are flattened as dev.KEY / test.KEY
_COLUMNS = (
    "task",
    "size",
    "method",
    "seed",
    "main_metric",
    "dev_score",
    "test_score",
    "majority_dev_score",
    "best_epoch",
    "epochs_run",
    "stopped_early",
    "train_seconds",
    "wall_seconds",
    "train_samples_per_second",
)


def flat_row(record: dict) -> dict:
    """One results.csv row: identity (with grid.NAME columns after seed for a grid cell),
    scores, and the isotropy at the best checkpoint."""
    row = {key: record.get(key) for key in _COLUMNS[: _COLUMNS.index("seed") + 1]}
    for name, value in (record.get("grid") or {}).items():
        row[f"grid.{name}"] = value
    row.update({key: record.get(key) for key in _COLUMNS[_COLUMNS.index("seed") + 1 :]})
    for split in ("dev", "test"):
        for key, value in (record.get(split) or {}).items():
            row[f"{split}.{key}"] = value
    for side, report in (record.get("isotropy_at_best") or {}).items():
        for key, value in report.items():
            row[f"{side}.{key}"] = value
    return row


def write_study_results(study: Study, out: Path) -> list[Path]:
    """Write results.json, results.csv and RESULTS.md from the finished cells in `out` that
    the study declares and that were trained with its settings and data; any other finished
    cell is listed apart (results.json "apart", RESULTS.md), with the reason, and a warning.
    All or none of them are replaced (a full disk leaves the earlier ones whole)."""
    with all_or_none():
        return _write_study_results(study, out)


def _write_study_results(study: Study, out: Path) -> list[Path]:
    from isobn.study.binding import sort_records

    records, apart = sort_records(study, finished_cells(out))
    if apart:
        logger.warning(
            "%d finished cell(s) in %s are not tabled (%s: %s); see RESULTS.md",
            len(apart),
            out,
            apart[0]["cell"],
            apart[0]["reason"],
        )
    planned = {cell.key for cell in study.cells()}
    write_json_atomically(
        out / "results.json",
        {"study": study.name, "cells": records, "planned_cells": len(planned), "apart": apart},
    )
    rows = [flat_row(r) for r in records]
    columns = list(dict.fromkeys(key for row in rows for key in row)) or list(_COLUMNS)
    with replaced_atomically(out / "results.csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    paths = [out / "results.json", out / "results.csv"]
    try:
        from isobn.study.markdown import write_results_markdown
    except ModuleNotFoundError:
        return paths
    return paths + write_results_markdown(study, out, records, apart)
