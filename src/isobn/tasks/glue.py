"""GLUE tasks from the Hugging Face hub (``nyu-mll/glue``) or the original GLUE TSV files.

Label indices follow the hub, so ``data_dir`` (original GLUE TSV layout) and the hub give
identical tasks. GLUE test sets are unlabelled and are not loaded. Metrics are
``metrics.glue_metrics`` (mnli: its two dev sets scored together, see ``Task.score``).
"""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import isobn.tasks.metrics as metrics
from isobn.errors import UserError
from isobn.paths import check_directory
from isobn.tasks.files import raise_csv_field_limit, read_text
from isobn.tasks.task import Example, Task

__all__ = ["GLUE", "GLUE_TASKS", "GlueSpec", "glue_files", "load_glue"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GlueSpec:
    """Where one GLUE task's data are and how its columns and labels read."""

    folder: str  # folder name in the GLUE download
    label_names: tuple[str, ...]  # HF order; () for regression
    hf_columns: tuple[str, str | None]  # text, text_pair columns on the hub
    tsv_columns: tuple[str | int, str | int | None, str | int]  # text, pair, label in the TSV
    header: bool = True
    dev: tuple[tuple[str, str, str], ...] = (("dev", "dev", "validation"),)  # name, tsv, hub
    unlabelled: str | None = None  # a TSV label value meaning "no gold label": row skipped
    aliases: tuple[str, ...] = ()  # other accepted names


_NLI = ("entailment", "not_entailment")
GLUE: dict[str, GlueSpec] = {
    # CoLA TSVs have no header: source, label, label_notes, sentence
    "cola": GlueSpec("CoLA", ("unacceptable", "acceptable"), ("sentence", None), (3, None, 1),
                     header=False),
    "sst2": GlueSpec("SST-2", ("negative", "positive"), ("sentence", None),
                     ("sentence", None, "label"), aliases=("sst-2",)),
    "mrpc": GlueSpec("MRPC", ("not_equivalent", "equivalent"), ("sentence1", "sentence2"),
                     ("#1 String", "#2 String", "Quality")),
    "stsb": GlueSpec("STS-B", (), ("sentence1", "sentence2"), ("sentence1", "sentence2", "score"),
                     aliases=("sts-b",)),
    "qqp": GlueSpec("QQP", ("not_duplicate", "duplicate"), ("question1", "question2"),
                    ("question1", "question2", "is_duplicate")),
    # gold label "-": no annotator consensus
    "mnli": GlueSpec("MNLI", ("entailment", "neutral", "contradiction"), ("premise", "hypothesis"),
                     ("sentence1", "sentence2", "gold_label"), unlabelled="-",
                     dev=(("dev_matched", "dev_matched", "validation_matched"),
                          ("dev_mismatched", "dev_mismatched", "validation_mismatched"))),
    "qnli": GlueSpec("QNLI", _NLI, ("question", "sentence"), ("question", "sentence", "label")),
    "rte": GlueSpec("RTE", _NLI, ("sentence1", "sentence2"), ("sentence1", "sentence2", "label")),
    "wnli": GlueSpec("WNLI", ("not_entailment", "entailment"), ("sentence1", "sentence2"),
                     ("sentence1", "sentence2", "label")),
}  # fmt: skip
GLUE_TASKS: tuple[str, ...] = tuple(GLUE)

# Malformed rows in a GLUE TSV are skipped with a warning up to this share of the file; more
# means it is not a GLUE file (wrong delimiter, wrong task folder) and is an error.
_GLUE_MAX_BAD_FRACTION = 0.01


def load_glue(name: str, data_dir: str | None) -> Task:
    """GLUE task ``name`` from ``data_dir`` (GLUE TSV layout) or, without it, from the hub."""
    spec = GLUE[name]
    if data_dir is None:
        splits = _load_glue_hub(name, spec)
    else:
        folder = _glue_folder(Path(data_dir), spec)
        splits = {"train": _read_glue_tsv(folder / "train.tsv", spec)}
        for split, stem, _ in spec.dev:
            splits[split] = _read_glue_tsv(folder / f"{stem}.tsv", spec)
    return Task(
        name=name,
        regression=not spec.label_names,
        label_names=list(spec.label_names),
        splits=splits,
        dev_splits=[split for split, _, _ in spec.dev],
        main_metric=metrics.GLUE_MAIN_METRIC[name],
        split_metrics=partial(metrics.glue_metrics, name),
        input_columns=spec.hf_columns,
    )


def glue_files(name: str, data_dir: str) -> list[Path]:
    """The TSV files load_glue reads for GLUE task `name` from `data_dir`: train, then each
    dev split; [] when they are not there (loading them says why)."""
    spec = GLUE[name]
    try:
        folder = _glue_folder(Path(data_dir), spec)
    except UserError:
        return []
    files = [folder / "train.tsv", *(folder / f"{stem}.tsv" for _, stem, _ in spec.dev)]
    return [path for path in files if path.is_file()]


def _glue_folder(data_dir: Path, spec: GlueSpec) -> Path:
    if not data_dir.is_dir() and not data_dir.is_symlink() and not data_dir.exists():
        raise UserError(f"GLUE data directory not found: {data_dir}; check --data-dir")
    check_directory(data_dir, "--data-dir", "pass the GLUE folder (original GLUE TSV layout)")
    for folder in (data_dir / spec.folder, data_dir):
        if (folder / "train.tsv").is_file():
            return folder
    raise UserError(
        f"no {spec.folder}/train.tsv under {data_dir}; point --data-dir at the GLUE folder "
        f"holding {spec.folder}/ (original GLUE TSV layout) or omit it to use the hub"
    )


def _tsv_layout(path: Path, reader, spec: GlueSpec) -> tuple[int, int, int | None, int]:
    """(row width, text, pair, label column indices), reading the header when there is one."""
    text_col, pair_col, label_col = spec.tsv_columns
    if not spec.header:
        return 4, text_col, pair_col, label_col
    header = [h.strip() for h in next(reader, [])]
    wanted = [c for c in (text_col, pair_col, label_col) if c is not None]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise UserError(
            f"{path} lacks column(s) {', '.join(map(repr, missing))} (found: "
            f"{', '.join(header) or 'nothing'}); is this the {spec.folder} TSV from GLUE?"
        )
    pair = header.index(pair_col) if pair_col is not None else None
    return len(header), header.index(text_col), pair, header.index(label_col)


def _read_glue_tsv(path: Path, spec: GlueSpec) -> list[Example]:
    """Parse one original GLUE TSV (``QUOTE_NONE``: GLUE text contains unbalanced quotes)."""
    if not path.is_file():
        raise UserError(f"GLUE file missing: {path}; the original GLUE download has it")
    raise_csv_field_limit()
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    try:
        width, ti, pi, li = _tsv_layout(path, reader, spec)
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
            if raw_label == spec.unlabelled:
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
    _check_bad_rows(path, spec, bad, rows)
    if not examples:
        raise UserError(f"{path} has no labelled rows; is this the {spec.folder} TSV from GLUE?")
    return examples


def _check_bad_rows(path: Path, spec: GlueSpec, bad: list[tuple[int, str]], rows: int) -> None:
    """A few malformed rows are skipped with a warning; many are an error."""
    if not bad:
        return
    first_line, reason = bad[0]
    summary = f"{len(bad)} of {rows} rows malformed in {path} (first: line {first_line}, {reason})"
    if len(bad) > max(10, _GLUE_MAX_BAD_FRACTION * rows):
        raise UserError(f"{summary}; is this the original {spec.folder} TSV from GLUE?")
    logger.warning("%s; skipped them", summary)


def _glue_label(raw: str, spec: GlueSpec) -> int | float | None:
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


def _load_glue_hub(name: str, spec: GlueSpec) -> dict[str, list[Example]]:
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
