"""Tasks: GLUE, offline text-classification datasets and the user's own files.

A [`Task`][isobn.tasks.task.Task] holds labelled examples per split and knows how to score
predictions. Tasks come from [`load_task`][isobn.tasks.load_task] (by name) or
[`load_files`][isobn.tasks.files.load_files] (CSV/TSV/JSONL files).

| module        | owns                                                                     |
|---------------|--------------------------------------------------------------------------|
| ``task``      | ``Example``, ``Task`` and its scoring                                    |
| ``glue``      | GLUE from the hub or the original TSV layout                             |
| ``offline``   | the datasets shipped in packages (mr, trec, sms-spam): a registry        |
| ``files``     | user CSV/TSV/JSONL files; ``read_rows``, the row reader ``predict`` uses |
| ``checks``    | one role per column; warnings on repeated rows, one class, flat targets  |
| ``sampling``  | seeded stratified subsampling, the fixed 80/10/10 split                  |

Main metric (``Task.main_metric``, the key used for early stopping) per task:

| task                  | metrics returned by ``Task.score``                   | main metric      |
|-----------------------|------------------------------------------------------|------------------|
| cola                  | mcc                                                  | mcc              |
| sst2, qnli, rte, wnli | accuracy                                             | accuracy         |
| mrpc, qqp             | f1 (class 1), accuracy, f1_accuracy (their mean)     | f1_accuracy      |
| stsb                  | pearson, spearman, pearson_spearman (their mean)     | pearson_spearman |
| mnli                  | matched_accuracy, mismatched_accuracy, accuracy_mean | accuracy_mean    |
| mr, trec              | accuracy, macro_f1 (mr also f1 of ``fresh``)         | accuracy         |
| sms-spam              | accuracy, macro_f1, f1 (of ``spam``)                 | f1               |
| file (classification) | accuracy, macro_f1                                   | accuracy         |
| file (regression)     | pearson, spearman, pearson_spearman (their mean)     | pearson_spearman |
"""

from __future__ import annotations

import logging

from isobn.errors import UserError
from isobn.tasks.files import load_files, read_rows, text_value
from isobn.tasks.glue import GLUE, GLUE_TASKS, load_glue
from isobn.tasks.offline import DATASETS, OFFLINE_TASKS, load_offline
from isobn.tasks.sampling import check_max, limit_task
from isobn.tasks.task import Example, Task

__all__ = [
    "GLUE_TASKS",
    "OFFLINE_TASKS",
    "TASK_NAMES",
    "Example",
    "Task",
    "load_files",
    "load_task",
    "read_rows",
    "task_key",
    "text_value",
]

logger = logging.getLogger(__name__)

TASK_NAMES: tuple[str, ...] = GLUE_TASKS + OFFLINE_TASKS

_ALIASES = {
    alias: name
    for registry in (GLUE, DATASETS)
    for name, entry in registry.items()
    for alias in entry.aliases
}


def load_task(
    name: str,
    *,
    data_dir: str | None = None,
    max_train: int | None = None,
    max_eval: int | None = None,
    seed: int = 0,
) -> Task:
    """Load a task by name (see ``TASK_NAMES``; case-insensitive).

    GLUE tasks are read from ``data_dir`` (original GLUE TSV layout, ``data_dir/CoLA/train.tsv``
    ...; a task folder itself is accepted too) or, without it, from the Hugging Face hub.
    Offline tasks (mr, trec, sms-spam) read their installed package and ignore ``data_dir``.
    ``max_train`` / ``max_eval`` keep a seeded, stratified subsample of train / of each
    evaluation split.
    """
    check_max("max_train", max_train)
    check_max("max_eval", max_eval)
    key = task_key(name)
    if key in GLUE_TASKS:
        task = load_glue(key, data_dir)
    else:
        if data_dir is not None:
            logger.warning(
                "task %s reads its installed package; ignoring data_dir=%s", key, data_dir
            )
        task = load_offline(key)
    return limit_task(task, max_train, max_eval, seed)


def task_key(name: str) -> str:
    """The registered name of a task name or alias, case-insensitive (``SST-2`` -> ``sst2``);
    a one-line UserError for an unknown name."""
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in TASK_NAMES:
        raise UserError(f"unknown task {name!r}; choose one of {', '.join(TASK_NAMES)}")
    return key
