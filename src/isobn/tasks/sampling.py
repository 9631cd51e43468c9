"""Seeded, stratified subsampling of a task's splits, and the fixed 80/10/10 split.

Both keep examples in their original order. Subsamples depend on the run's ``seed``; the
80/10/10 split of the offline datasets does not (``SPLIT_SEED``), so every run of a task sees
the same test set.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from isobn.errors import UserError
from isobn.tasks.checks import SampleLimit, check_training_sample, check_training_split
from isobn.tasks.task import Example, Task

__all__ = ["SPLIT_SEED", "check_max", "limit_task", "split_80_10_10", "subsample"]

logger = logging.getLogger(__name__)

SPLIT_SEED = 0  # fixed: offline train/dev/test splits never change with the run's seed


def check_max(what: str, value: int | None) -> None:
    """``max_train`` / ``max_eval`` are None (everything) or a positive whole number."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise UserError(f"{what} must be a positive whole number of examples, got {value!r}")


def limit_task(
    task: Task, max_train: int | None, max_eval: int | None, seed: int, where: str | None = None
) -> Task:
    """Subsample train to ``max_train`` and every other split to ``max_eval``; log the sizes.

    A training split that teaches nothing (one class, one target) is refused, before and
    after sampling, and a sample that misses classes of the evaluation splits is warned about
    (isobn.tasks.checks); ``where`` names the data in those messages (default ``task NAME``).
    """
    where = where or f"task {task.name}"
    check_training_split(task, where)
    full = task.splits["train"]
    for split in list(task.splits):
        limit = max_train if split == "train" else max_eval
        task.splits[split] = subsample(task.splits[split], limit, seed, task.regression)
    sizes = ", ".join(f"{split}={len(ex)}" for split, ex in task.splits.items())
    logger.info("%s: %s", where, sizes)
    if max_train is not None:
        limit = SampleLimit(f"--max-train {max_train}", "raise --max-train")
        check_training_sample(task, full, limit, where)
    return task


def subsample(examples: list[Example], n: int | None, seed: int, regression: bool) -> list[Example]:
    """A seeded, stratified subsample of ``n`` examples, kept in their original order.

    Classes get ``n`` in proportion to their size (largest remainder), and every class keeps at
    least one example when ``n`` allows. Regression targets are stratified by 10 quantile bins.
    ``examples`` itself is returned when ``n`` is None or not smaller than it.
    """
    total = len(examples)
    if n is None or n >= total:
        return examples
    if regression:
        order = np.argsort([float(e.label) for e in examples], kind="stable")
        strata = np.empty(total, dtype=np.int64)
        strata[order] = np.arange(total) * min(n, 10) // total
    else:
        strata = np.asarray([int(e.label) for e in examples])
    _, inverse = np.unique(strata, return_inverse=True)
    counts = np.bincount(inverse)
    quota = counts * n / total
    alloc = np.floor(quota).astype(np.int64)
    by_remainder = np.argsort(-(quota - alloc), kind="stable")
    alloc[by_remainder[: n - int(alloc.sum())]] += 1
    if n >= len(counts):
        for g in np.flatnonzero(alloc == 0):
            alloc[np.argmax(alloc)] -= 1
            alloc[g] = 1
    rng = np.random.default_rng(seed)
    chosen = np.concatenate(
        [rng.permutation(np.flatnonzero(inverse == g))[: alloc[g]] for g in range(len(counts))]
    )
    return [examples[i] for i in np.sort(chosen)]


def split_80_10_10(
    examples: Sequence[Example],
) -> tuple[list[Example], list[Example], list[Example]]:
    """Train/dev/test of 80/10/10 %, stratified by label, with ``random_state=SPLIT_SEED``."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray([e.label for e in examples])
    index = np.arange(len(examples))
    train, rest = train_test_split(index, test_size=0.2, stratify=labels, random_state=SPLIT_SEED)
    dev, test = train_test_split(
        rest, test_size=0.5, stratify=labels[rest], random_state=SPLIT_SEED
    )

    def pick(part: np.ndarray) -> list[Example]:
        return [examples[i] for i in np.sort(part)]

    return pick(train), pick(dev), pick(test)
