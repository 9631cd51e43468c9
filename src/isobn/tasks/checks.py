"""What the user's files must not be, and what deserves a warning.

Refused (one-line [`UserError`][isobn.errors.UserError]): a column with two roles.

- the text column as the label column, the pair column as the text or label column;
- a label column that holds the text. Two rules, on the training rows, each without
  exceptions in real class columns:

  * *copy*: the label equals the row's text (or second text) on every row;
  * *one sentence per class*: every label occurs once (as many classes as rows, so no class
    has a second example to be learnt from) and every label holds several words (whitespace
    inside): class names are names, these are texts. One-word labels that occur once (a
    two-row file ``hello,pos`` / ``bye,neg``) are not refused.

Warned (one line each, ``logging``), on the rows that training and scoring use:

- dev or test rows whose input (text and second text) repeats a training row: their score
  measures memory of the training set, not generalisation;
- a dev or test split of one class: a model that always predicts that class scores 1.0;
- constant regression targets in a split: Pearson and Spearman are undefined there
  ([`isobn.tasks.metrics`][isobn.tasks.metrics] reports them as NaN, tables as "undefined");
- class labels that are numbers (1e-3, 37.5%, 0,37 too), mostly different (at least
  NUMERIC_CLASSES_MIN values, NUMERIC_CLASSES_SHARE of the rows distinct): a continuous
  target read as classes of about one row each; `--regression` predicts the number. Or two
  spellings of one number (1 and 1.0): two classes that mean one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

from isobn.errors import UserError
from isobn.tasks.task import Task

__all__ = ["check_label_column", "check_roles", "warn_about_numeric_classes", "warn_about_splits"]

logger = logging.getLogger(__name__)

LabelledRow = tuple[str, str | None, str]  # (text, text_pair, label as written)


def check_roles(text_column: str, pair_column: str | None, label_column: str) -> None:
    """One role per column: the text, second-text and label columns are three columns."""
    if text_column == label_column:
        raise UserError(
            f"the text column and the label column are both {text_column!r}; a column has one "
            "role: pass the column of the labels with --label-column"
        )
    if pair_column is not None and pair_column == text_column:
        raise UserError(
            f"the second-text column is the text column {text_column!r}; pass the column of "
            "the second text with --text-pair-column, or drop it for single texts"
        )
    if pair_column is not None and pair_column == label_column:
        raise UserError(
            f"the second-text column is the label column {label_column!r}; a column has one "
            "role: pass the column of the second text with --text-pair-column"
        )


def check_label_column(
    path: str, rows: Sequence[LabelledRow], label_column: str, text_column: str
) -> None:
    """Refuse a label column that holds the text (the two rules of the module docstring)."""
    if not rows:
        return
    if all(label in (text.strip(), (pair or "").strip()) for text, pair, label in rows):
        raise UserError(
            f"{path}: the label column {label_column!r} holds the text: every label equals "
            "the row's text; pass the column of the labels with --label-column"
        )
    labels = [label for _, _, label in rows]
    sentences = all(len(label.split()) > 1 for label in labels)
    if len(rows) > 1 and len(set(labels)) == len(labels) and sentences:
        raise UserError(
            f"{path}: the label column {label_column!r} holds texts, not classes: its "
            f"{len(labels)} values are all different and several words long (e.g. "
            f"{_clip(labels[0])!r}); pass the column of the labels with --label-column "
            f"(the text column is {text_column!r}: --text-column)"
        )


NUMERIC_CLASSES_MIN = 5  # distinct values: fewer numeric classes are ordinary (0/1, ratings)
NUMERIC_CLASSES_SHARE = 0.5  # distinct values / rows: most classes would have a single row
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")  # 0,37: a decimal comma (a quoted CSV cell)


def warn_about_numeric_classes(path: str, labels: Sequence[str], label_column: str) -> None:
    """Warn when the training labels (as written) all parse as numbers (1e-3, -0.0, 37.5%,
    0,37, with spaces around) and either most of them are distinct (a continuous target
    trains a classifier of about one row per class) or two spellings name one number
    (1 and 1.0: two classes that mean one)."""
    distinct = set(labels)
    numbers = {label: _number(label) for label in distinct}
    if len(distinct) < 2 or any(value is None for value in numbers.values()):
        return
    same = _same_number(numbers)
    if same:
        logger.warning(
            "%s: the label column %r spells one number in several ways (%s): each spelling "
            "is a class of its own; write each number one way, or pass --regression",
            path, label_column, " and ".join(repr(s) for s in same),
        )  # fmt: skip
    if len(distinct) < max(NUMERIC_CLASSES_MIN, NUMERIC_CLASSES_SHARE * len(labels)):
        return
    logger.warning(
        "%s: the label column %r holds numbers that are mostly different (%d values in %d "
        "rows, e.g. %r): read as %d classes of %.1f rows each on average; pass --regression "
        "to predict the number",
        path, label_column, len(distinct), len(labels), labels[0], len(distinct),
        len(labels) / len(distinct),
    )  # fmt: skip


def _number(text: str) -> float | None:
    """The number `text` spells (a percentage as its number, a decimal comma as a point);
    None when it spells none."""
    text = text.strip().removesuffix("%").strip()
    if _DECIMAL_COMMA.fullmatch(text):
        text = text.replace(",", ".")
    try:
        return float(text)
    except ValueError:
        return None


def _same_number(numbers: dict[str, float | None]) -> list[str]:
    """Two spellings of one number among `numbers` (spelling -> value), sorted; [] if none."""
    seen: dict[float | None, str] = {}
    for spelling in sorted(numbers):
        value = numbers[spelling]
        if value in seen and value == value:  # NaN is no number to repeat
            return [seen[value], spelling]
        seen[value] = spelling
    return []


def warn_about_splits(task: Task, paths: Mapping[str, str]) -> None:
    """Log one warning per problem of the splits (see the module docstring); ``paths`` maps
    each split to the file it came from."""
    train_inputs = {_input(e) for e in task.splits["train"]}
    for split, examples in task.splits.items():
        path = paths.get(split, split)
        if split != "train":
            repeated = sum(_input(e) in train_inputs for e in examples)
            if repeated:
                logger.warning(
                    "%s: %d of %d %s rows repeat a training text; their score measures memory "
                    "of the training set, not generalisation: remove them from the %s file",
                    path, repeated, len(examples), split, split,
                )  # fmt: skip
        values = {e.label for e in examples}
        if len(values) != 1:
            continue
        [value] = values
        if task.regression:
            logger.warning(
                "%s: every %s target is %g: Pearson and Spearman are undefined on it (reported "
                "as undefined, not 0.0); use targets that vary",
                path, split, value,
            )  # fmt: skip
        elif split != "train":  # one training class is an error of load_files
            logger.warning(
                "%s: every %s row has label %r: a model that always predicts it scores "
                "accuracy 1.0, so the score means nothing; add rows of the other classes",
                path, split, task.label_names[int(value)],
            )  # fmt: skip


def _input(example) -> tuple[str, str | None]:
    pair = example.text_pair.strip() if example.text_pair is not None else None
    return example.text.strip(), pair


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
