"""The user's own data files: CSV, TSV and JSON lines, read into task ``"file"``.

[`read_rows`][isobn.tasks.files.read_rows] is the public row reader (``isobn predict`` reads its
input with it too); [`text_value`][isobn.tasks.files.text_value] validates one text cell;
[`load_files`][isobn.tasks.files.load_files] builds a [`Task`][isobn.tasks.task.Task]. Every problem
is a one-line [`UserError`][isobn.errors.UserError] naming the file, the line and the fix.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from isobn.errors import UserError
from isobn.paths import not_a_file, unreadable
from isobn.tasks.checks import (
    check_label_column,
    check_roles,
    label_key,
    warn_about_label_spellings,
    warn_about_numeric_classes,
    warn_about_splits,
)
from isobn.tasks.sampling import check_max, limit_task
from isobn.tasks.task import Example, Task

__all__ = [
    "ROW_SUFFIXES",
    "Row",
    "data_file_problem",
    "is_blank",
    "load_files",
    "read_rows",
    "read_text",
    "text_value",
]

ROW_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".ndjson")

Row = tuple[str, dict[str, Any]]  # (where: "FILE line N" for messages, {column: value})
_FileRecord = tuple[str, str, str | None, Any]  # (where, text, text_pair, raw label)
_CANONICAL_INT = re.compile(r"0|-?[1-9][0-9]*")  # 7, -3, 0; not 007, +7, 7.0, -0


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
    (a ``.json`` file holding one JSON array of objects works too). Files must be UTF-8; TSV
    is read as written (no quoting: a field holds no tab, and quotes are text).

    A classification label is its text as written (trimmed; JSON numbers and booleans as their JSON
    text): ``007``, ``7``, ``070`` and ``+7`` are four classes. Classes are ordered numerically when
    every training label is an integer written canonically (``-3``, ``0``, ``10``), else as text;
    ``label_names`` are the labels as written, and every dev/test label must occur in train, written
    alike. With ``regression`` labels are parsed as floats. Main metric: ``accuracy``
    (classification) or ``pearson_spearman`` (regression). Each column has one role, and problems of
    the splits (dev rows repeating training rows, one dev class, constant targets) are logged: see
    [`isobn.tasks.checks`][isobn.tasks.checks].
    """
    check_max("max_train", max_train)
    check_max("max_eval", max_eval)
    check_roles(text_column, text_pair_column, label_column)
    paths = {"train": train, "dev": dev} | ({"test": test} if test is not None else {})
    for split, path in paths.items():
        problem = data_file_problem(path, split=split)
        if problem is not None:
            raise UserError(problem)
    raw = {
        split: _file_records(Path(path), text_column, text_pair_column, label_column)
        for split, path in paths.items()
    }
    labelled = [(t, tp, _written(lab)) for _, t, tp, lab in raw["train"]]
    check_label_column(train, labelled, label_column, text_column)
    label_names, splits = _labelled_splits(raw, train, regression)
    if not regression:  # once the labels are known good: no warning before an error
        warn_about_numeric_classes(train, [label for _, _, label in labelled], label_column)
        warn_about_label_spellings(train, [label for _, _, label in labelled], label_column)
    task = Task(
        name="file",
        regression=regression,
        label_names=label_names,
        splits=splits,
        dev_splits=["dev"],
        main_metric="pearson_spearman" if regression else "accuracy",
        input_columns=(text_column, text_pair_column),
    )
    task = limit_task(task, max_train, max_eval, seed, where=train)
    warn_about_splits(task, paths)
    return task


def _labelled_splits(raw: dict, train: str, regression: bool) -> tuple[list[str], dict]:
    """(label_names, {split: [Example]}) of the records read: floats for regression, else
    class indices of the training file's labels."""
    if regression:
        splits = {
            split: [Example(t, tp, _as_float(lab, where)) for where, t, tp, lab in records]
            for split, records in raw.items()
        }
        return [], splits
    label_names, index = _label_index(Path(train), raw["train"])
    splits = {split: _indexed(records, index, label_names, train) for split, records in raw.items()}
    return label_names, splits


# --------------------------------------------------------------------------------------------
# Reading: text, rows, cells


def read_text(path: Path) -> str:
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


def raise_csv_field_limit() -> None:
    """Allow arbitrarily long CSV fields (the default limit is 128 KiB)."""
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:  # C long is 32 bits on some platforms
            limit //= 2


def read_rows(path: str | Path, columns: Sequence[str], hint: str = "") -> Iterator[Row]:
    """The rows of a ``.csv``/``.tsv`` (header row) or ``.jsonl``/``.json`` file, in file order.

    Yields ``(where, row)``: ``where`` is ``"FILE line N"`` (``"FILE item N"`` in a JSON array)
    for messages, ``row`` maps column names to values (strings in CSV/TSV, any JSON value in
    JSON). Every row holds every name in ``columns``. Blank lines are skipped. A missing,
    empty, undecodable or malformed file, a missing column, or a file without rows raises a
    one-line UserError; ``hint`` (e.g. ``"; set --text-column"``) is appended to the
    missing-column message. Rows are checked lazily, so the first problem in file order is
    the one reported when the caller checks each row's values as it goes.
    """
    path = Path(path)
    text = _read_data_file(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        header, rows = _parse_delimited(path, text, "," if suffix == ".csv" else "\t")
        missing = [c for c in columns if c not in header]
        if missing:
            raise UserError(
                f"{path} has no column {missing[0]!r}; available columns: {', '.join(header)}"
                + hint
            )
    else:
        rows = _parse_json_rows(path, text, suffix)
    if not rows:
        raise UserError(f"{path} has no examples, only a header; add rows")
    for where, row in rows:
        missing = [c for c in columns if c not in row]
        if missing:
            raise UserError(
                f"{where}: no column {missing[0]!r}; available columns: {', '.join(map(str, row))}"
                + hint
            )
        yield where, row


def text_value(value: Any, where: str, column: str) -> str:
    """A text cell as a string (JSON numbers become their text); null, objects, lists, booleans
    and blank strings are a one-line UserError naming ``where`` and ``column``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        kind = "null" if value is None else type(value).__name__
        raise UserError(f"{where}: column {column!r} holds {kind}, not text; fix or drop the row")
    if is_blank(value):
        kind = _invisible(value)
        raise UserError(f"{where}: empty text in column {column!r}{kind}; fill or drop the row")
    return value


def _invisible(value: str) -> str:
    """` (only invisible characters: U+200B, ...)` for a blank text that holds more than
    whitespace, else ``."""
    shown = ", ".join(sorted({f"U+{ord(c):04X}" for c in value if not c.isspace()})[:4])
    return f" (only invisible characters: {shown})" if shown else ""


# Unicode categories of characters that show nothing and that tokenizers drop: separators
# (spaces, line and paragraph separators), controls, format characters (zero-width space
# and joiners, bidirectional marks and embeddings U+200E/F and U+202A-E, word joiner and
# invisible operators U+2060-4, the byte order mark U+FEFF, soft hyphen, tag characters),
# and marks that only change the character before them (combining accents, variation
# selectors U+FE00-F and U+E0100-EF, the combining grapheme joiner): with no letter to sit
# on they show nothing, and BERT-style tokenizers strip them.
_INVISIBLE = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Mn", "Me"})
# letters and symbols drawn as blank space: the Hangul fillers, the blank Braille pattern
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def is_blank(text: str) -> bool:
    """Whether `text` has no visible character: only whitespace, zero-width, bidirectional,
    BOM and tag characters, marks with no letter to sit on (_INVISIBLE) and blank letters
    (_BLANK_LETTERS), which tokenise to no tokens or to one unknown token."""
    return all(
        c.isspace() or c in _BLANK_LETTERS or unicodedata.category(c) in _INVISIBLE for c in text
    )


def data_file_problem(path: str | Path, regular: bool = True, split: str = "") -> str | None:
    """Why `path` cannot be read as a data file, as the start of a one-line message (the
    fix included), or None: it does not exist, it is a broken symbolic link, a directory (the
    data files in it are named), something this user may not read, or (with `regular`) no
    regular file: a named pipe can be read only once, and a run reads its files more than
    once (to load them and to fingerprint them). Nothing but a regular file is opened. The
    example given for a directory is a file named after `split` (train, dev), when it has one."""
    path = Path(path)
    problem = not_a_file(path)
    if problem is None:
        if unreadable(path):
            return f"cannot read {path} (permission denied); check its permissions"
        return None
    if problem.endswith("does not exist") and not path.is_symlink():
        return f"file not found: {path}; check the path"
    if problem.endswith("is a directory"):
        return f"{problem}, not a data file; {_files_in(path, split)}"
    if problem.endswith("which does not exist"):
        return f"{problem}; fix the link, or pass the data file itself"
    if not regular:
        return None  # a pipe: read once, as `cat` would
    return (
        f"{problem}, not a regular file: a run reads its data files more than once (to load "
        "and to fingerprint them); write the data to a file and pass that"
    )


def _files_in(directory: Path, split: str) -> str:
    """What to pass instead of `directory`: the data files in it, when it has some (the
    example: the first whose name holds `split`, else the first)."""
    try:
        names = sorted(p.name for p in directory.iterdir() if p.suffix.lower() in ROW_SUFFIXES)
    except OSError:
        names = []
    if not names:
        return "pass the path of a .csv, .tsv or .jsonl file"
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    example = next((n for n in names if split and split in n.lower()), names[0])
    return f"pass one of its data files ({shown}), e.g. {directory / example}"


def _read_data_file(path: Path) -> str:
    suffix = path.suffix.lower()
    problem = data_file_problem(path, regular=False)
    if problem is not None:
        raise UserError(problem)
    if suffix not in ROW_SUFFIXES:
        raise UserError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; use .csv, .tsv or .jsonl"
        )
    text = read_text(path)
    if not text.strip():
        raise UserError(f"{path} is empty; it needs a header row and at least one example")
    return text


def _parse_delimited(path: Path, text: str, delimiter: str) -> tuple[list[str], list[Row]]:
    """CSV with quoting (RFC 4180); TSV as written, as the GLUE reader: no quoting, so quotes
    are text (``"Best" film ever`` stays) and a field holds no tab and no line break."""
    raise_csv_field_limit()
    kind = "CSV" if delimiter == "," else "TSV"
    quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    rows: list[Row] = []
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
                if kind == "TSV":
                    hint = "TSV is read as written: a field cannot hold a tab; use CSV for that"
                elif any("\n" in value for value in row):
                    hint = 'an unclosed quote (") swallowed the lines after it'
                raise UserError(
                    f"{where}: {len(row)} fields but the header has {len(header)}; fix the row "
                    f"({hint})"
                )
            rows.append((where, dict(zip(header, row, strict=True))))
    except csv.Error as e:
        raise UserError(f"{path} line {start}: malformed {kind} ({e}); fix the file") from None
    return header, rows


def _parse_json_rows(path: Path, text: str, suffix: str) -> list[Row]:
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


# --------------------------------------------------------------------------------------------
# Records and labels


def _file_records(
    path: Path, text_column: str, pair_column: str | None, label_column: str
) -> list[_FileRecord]:
    """Rows of one user file as ``(where, text, text_pair, raw_label)``, validated."""
    columns = [text_column, label_column] + ([pair_column] if pair_column else [])
    records: list[_FileRecord] = []
    for where, row in read_rows(path, columns):
        text = text_value(row[text_column], where, text_column)
        pair = text_value(row[pair_column], where, pair_column) if pair_column else None
        label = row[label_column]
        if label is None or (isinstance(label, str) and is_blank(label)):
            shown = "" if label is None else _invisible(label)
            raise UserError(
                f"{where}: empty label in column {label_column!r}{shown}; fill or drop the row"
            )
        records.append((where, text, pair, label))
    return records


def _indexed(
    records: list[_FileRecord],
    index: dict[str, int],
    label_names: list[str],
    train: str,
) -> list[Example]:
    """Examples with class indices; a label unseen in the training file is an error."""
    examples = []
    for where, text, pair, raw in records:
        label = _label_text(raw, where)
        if label not in index:
            shown = ", ".join(label_names[:20]) + (" ..." if len(label_names) > 20 else "")
            alike = [name for name in label_names if _same_spelled(name, label)]
            note = (
                f" (labels are compared as written: {label!r} is not {alike[0]!r})" if alike else ""
            )
            raise UserError(
                f"{where}: label {label!r} does not occur in the training file {train}{note} "
                f"(training labels: {shown}); fix the label or add training examples"
            )
        examples.append(Example(text, pair, index[label]))
    return examples


def _written(raw: Any) -> str:
    """A label cell as written: strings trimmed, JSON values as their JSON text."""
    if isinstance(raw, str):
        return raw.strip()
    if isinstance(raw, bool):
        return "true" if raw else "false"
    return str(raw)


def _label_text(raw: Any, where: str) -> str:
    """A class label: its text as written (``_written``); a JSON fraction, object or list is
    a one-line UserError."""
    if isinstance(raw, float) and not raw.is_integer():
        raise UserError(
            f"{where}: label {raw!r} is not a class; use integer or string labels, "
            "or regression for numeric targets"
        )
    if isinstance(raw, dict | list):
        raise UserError(f"{where}: label of type {type(raw).__name__} is not a class; use a string")
    return _written(raw)


def _same_spelled(a: str, b: str) -> bool:
    """Whether two label texts name one class spelled two ways: the same number (`7` and
    `007`), or the same words but for case, Unicode forms or spaces (`pos` and `Pos`)."""
    return _same_number(a, b) or label_key(a) == label_key(b)


def _same_number(a: str, b: str) -> bool:
    """Whether two label texts read as the same number (``7`` and ``007``)."""
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def _label_index(path: Path, records: list[_FileRecord]) -> tuple[list[str], dict[str, int]]:
    """Label names (as written) and the map from label to index, from the training records:
    numeric order when every label is a canonical integer, else text order."""
    names = sorted({_label_text(raw, where) for where, _, _, raw in records})
    if all(_CANONICAL_INT.fullmatch(name) for name in names):
        names.sort(key=int)
    if len(names) < 2:
        raise UserError(
            f"{path}: every training label is {names[0]!r}; classification needs at least "
            "two classes (or use regression for numeric targets)"
        )
    return names, {name: i for i, name in enumerate(names)}


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
