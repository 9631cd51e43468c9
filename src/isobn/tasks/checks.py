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

Refused too, on the rows training uses: a training split of one class, or of one regression
target (the model predicts it for every text); a training sample (``max_train``) that keeps
one class or one target of a split that has several.

Warned (one line each, ``logging``), on the rows that training and scoring use:

- dev or test rows whose input (text and second text) repeats a training row: their score
  measures memory of the training set, not generalisation;
- a dev or test split of one class: a model that always predicts that class scores 1.0;
- constant regression targets in a split: Pearson and Spearman are undefined there
  ([`isobn.tasks.metrics`][isobn.tasks.metrics] reports them as NaN, tables as "undefined");
- class labels that are numbers (1e-3, 37.5%, 0,37 too), mostly different (at least
  NUMERIC_CLASSES_MIN values, NUMERIC_CLASSES_SHARE of the rows distinct): a continuous
  target read as classes of about one row each; `--regression` predicts the number. Or two
  spellings of one number (1 and 1.0): two classes that mean one;
- a training sample (``max_train``) that misses classes of the evaluation splits: the model
  can never predict them.

Each warning is shown once where a command loads a task many times: `warnings_once` (the runs
of `isobn experiment`), `quiet` (a study's cells: the study checked their data up front).
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from isobn.errors import UserError
from isobn.tasks.task import Example, Task

__all__ = [
    "SampleLimit",
    "check_label_column",
    "check_roles",
    "check_training_sample",
    "check_training_split",
    "label_key",
    "quiet",
    "warn_about_label_spellings",
    "warn_about_numeric_classes",
    "warn_about_splits",
    "warnings_once",
]

logger = logging.getLogger(__name__)


class _Once(logging.Filter):
    """Lets each message through once (`drop_all`: none)."""

    def __init__(self, drop_all: bool = False) -> None:
        super().__init__()
        self.shown: set[str] = set()
        self.drop_all = drop_all

    def filter(self, record: logging.LogRecord) -> bool:
        if self.drop_all and record.levelno <= logging.WARNING:
            return False
        message = record.getMessage()
        if message in self.shown:
            return False
        self.shown.add(message)
        return True


@contextmanager
def _filtered(drop_all: bool) -> Iterator[None]:
    once = _Once(drop_all)
    logger.addFilter(once)
    try:
        yield
    finally:
        logger.removeFilter(once)


def warnings_once() -> AbstractContextManager[None]:
    """Within the block, each data warning is shown once, however often a task is loaded
    (`isobn experiment` loads it for each of its runs)."""
    return _filtered(drop_all=False)


def quiet() -> AbstractContextManager[None]:
    """Within the block, no data warning is shown (a study's cell: the study showed them
    when it checked every cell's data, before the first cell ran). Errors still raise."""
    return _filtered(drop_all=True)


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


def label_key(label: str) -> str:
    """What two spellings of one class share: the label with Unicode compatibility forms
    unified (NFKC: a composed and a decomposed é), case folded and runs of spaces made one."""
    return " ".join(unicodedata.normalize("NFKC", label).casefold().split())


def warn_about_label_spellings(path: str, labels: Sequence[str], label_column: str) -> None:
    """Warn when the training labels (as written) spell one class in several ways (`pos`,
    `Pos`, `POS`; a composed and a decomposed é) or mix numbers and words (`1`, `2`, `pos`,
    `neg`: two codings of the classes merged, or a placeholder such as `n/a` among rating
    labels): each spelling is a class of its own, and the model splits one class in two."""
    distinct = sorted(set(labels))
    spellings: dict[str, list[str]] = {}
    for label in distinct:
        if _number(label) is None:  # two spellings of a number: warn_about_numeric_classes
            spellings.setdefault(label_key(label), []).append(label)
    several = next((group for group in spellings.values() if len(group) > 1), None)
    if several:
        logger.warning(
            "%s: the label column %r spells one class in several ways (%s): each spelling is a "
            "class of its own; write each class one way",
            path, label_column, " and ".join(_spelled(several)[:3]),
        )  # fmt: skip
    numbers = [label for label in distinct if _finite(_number(label))]
    words = [label for label in distinct if not _finite(_number(label))]
    if numbers and words:
        logger.warning(
            "%s: the label column %r mixes numbers (%s) and words (%s): %d classes; if a "
            "number and a word name one class, write it one way",
            path, label_column, _shown(numbers), _shown(words), len(distinct),
        )  # fmt: skip


def _spelled(labels: Sequence[str]) -> list[str]:
    """The labels quoted; with their escapes (ascii) where two of them look alike (a composed
    and a decomposed é)."""
    alike = len({unicodedata.normalize("NFC", label) for label in labels}) < len(labels)
    return [ascii(label) if alike else repr(label) for label in labels]


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _shown(values: Sequence[str], limit: int = 3) -> str:
    return ", ".join(map(repr, values[:limit])) + (", ..." if len(values) > limit else "")


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


@dataclass(frozen=True)
class SampleLimit:
    """How a training sample's size was chosen, for messages: `what` kept the rows
    ("--max-train 3", "size 3"), `fix` makes it larger ("raise --max-train", "use a larger
    size in S.toml")."""

    what: str
    fix: str


def check_training_split(task: Task, where: str) -> None:
    """Refuse a training split that teaches nothing: one class, or one regression target (the
    model predicts it for every text). `where` names the data (a file, `task NAME`)."""
    values = {e.label for e in task.splits["train"]}
    if len(values) != 1:
        return
    [value] = values
    if task.regression:
        raise UserError(
            f"{where}: every training target is {value:g}: a model trained on it predicts one "
            "value for every text; use targets that vary"
        )
    raise UserError(
        f"{where}: every training label is {_class_name(task, value)!r}; classification needs "
        "at least two classes (or use regression for numeric targets)"
    )


def check_training_sample(
    task: Task, full: Sequence[Example], limit: SampleLimit, where: str
) -> None:
    """`task`'s training split is a sample of the training rows `full`, `limit` its size:
    refuse a sample of one class or one target (from rows of several), and warn when it has
    no row of classes that the evaluation splits have (the model can never predict those)."""
    sample = task.splits["train"]
    kept = {e.label for e in sample}
    every = {e.label for e in full}
    n = len(sample)
    rows = f"{n} training row{'s' if n != 1 else ''}"
    if len(kept) == 1 < len(every):
        [value] = kept
        what = f"with target {value:g}" if task.regression else (
            f"of class {_class_name(task, value)!r}")  # fmt: skip
        more = "" if task.regression else f" (at least {len(every)}, the number of classes)"
        raise UserError(
            f"{where}: {limit.what} keeps {rows}, all {what}: a model trained on them "
            f"predicts it for every text; {limit.fix}{more}"
        )
    if task.regression:
        return
    evaluated = {e.label for s, rows in task.splits.items() if s != "train" for e in rows}
    missing = sorted(evaluated - kept)
    if missing:
        names = ", ".join(repr(_class_name(task, label)) for label in missing[:3])
        logger.warning(
            "%s: %s keeps %s, which miss %d of the %d classes of the evaluation splits (e.g. "
            "%s): the model can never predict them; %s (at least %d, the number of classes)",
            where, limit.what, rows, len(missing), len(evaluated), names, limit.fix, len(every),
        )  # fmt: skip


def _class_name(task: Task, label: float) -> str:
    index = int(label)
    return task.label_names[index] if index < len(task.label_names) else str(index)


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
        if split == "train":  # refused: isobn.tasks.checks.check_training_split
            continue
        if task.regression:
            logger.warning(
                "%s: every %s target is %g: Pearson and Spearman are undefined on it (reported "
                "as undefined, not 0.0); use targets that vary",
                path, split, value,
            )  # fmt: skip
        else:
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
