"""`isobn predict`: label a file of texts with a checkpoint written by `isobn train`.

The model reads what it was trained on: the text columns and max length come from the
checkpoint's isobn_model.json (a copied best/ works alike); flags override them. Checkpoints
written before isobn recorded them fall back to the run's config.json beside best/, then to
column "text" and 128 tokens. A model trained on text pairs refuses a `.txt` file (single
texts), and a model trained on single texts refuses `--text-pair-column`.

The input contract is train's: CSV/TSV/JSONL rows are read by `isobn.tasks.read_rows` and every
text is checked by `isobn.tasks.text_value` (null, an object or an empty text is a one-line error
with the file and line); `--max-length` gets train's check. A `.txt` file holds one text per
line (lines end at "\n" only) and gives exactly one prediction per non-blank line, in input
order; blank lines are skipped, as in CSV and JSONL files, with a warning naming them, and
so are lines that the model's tokenizer reduces to no token (a row of such a text is refused,
as an empty text is: `check_tokenless`). The
`--output` file is checked before the model is loaded and written atomically, in the format
its extension names (`OUTPUT_FORMATS`); any other extension is refused.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from pathlib import Path

from isobn import json_text
from isobn.cli.options import add_setting
from isobn.training.config import TrainConfig

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", "")  # one text per line
Located = tuple[str, str, str | None]  # ("FILE line N", text, second text or None)
# --output extension -> format; standard output gets JSON lines
OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
                  ".tsv": "tsv"}  # fmt: skip


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict labels for a file of texts",
        description="Read texts (.txt: one per line, blank lines skipped; .csv/.tsv/.jsonl: "
        "the columns the model was trained on) and write one prediction per text, in input "
        "order: JSON lines, or the format the --output extension names (.jsonl, .json: one "
        "array, .csv, .tsv).",
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="a run directory of `isobn train` or its best/ checkpoint, or a transformers "
        "classifier directory (written by `isobn export` or save_pretrained)",
    )
    parser.add_argument("--input", required=True, help="file of texts")
    parser.add_argument(
        "--output",
        help="output file, .jsonl, .json, .csv or .tsv (default: JSON lines on standard output)",
    )
    for name, text in (("text_column", "the training run's, else text"),
                       ("text_pair_column", "the training run's"),
                       ("max_length", "the training run's")):  # fmt: skip
        add_setting(parser, TrainConfig, name, default=None, default_text=text)
    add_setting(parser, TrainConfig, "batch_size", default=64)
    add_setting(parser, TrainConfig, "trust_remote_code")
    parser.set_defaults(run=run)


def checkpoint_and_run_config(path: Path) -> tuple[Path, dict]:
    from isobn.errors import UserError
    from isobn.training.checkpoint import resolve_directory

    if (path / "best").exists() or (path / "best.old").exists():
        run_dir, best = path, resolve_directory(path / "best")
    else:
        run_dir, best = path.parent, path
    if best is None or not best.is_dir():
        raise UserError(f"checkpoint {path} does not exist: pass an `isobn train` --out directory")
    config_file = run_dir / "config.json"
    if not config_file.is_file():
        return best, {}
    try:
        run_config = json_text.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(
            f"cannot read {config_file} ({error}); pass --text-column and --max-length with "
            f"the checkpoint {best} instead of its run directory"
        ) from None
    return best, run_config if isinstance(run_config, dict) else {}


def _settings(
    args: argparse.Namespace, model_config, run_config: dict
) -> tuple[str, str | None, int]:
    """(text column, pair column, max length): the arguments, else the checkpoint's
    isobn_model.json, else (older checkpoints) the training run's config.json, else "text",
    no pair and 128. A model known to be trained on single texts refuses a pair column."""
    from isobn.errors import UserError

    for name in ("batch_size", "max_length"):
        value = getattr(args, name)
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} must be a positive integer, got {value}")
    trained = {
        "text_column": model_config.text_column,
        "text_pair_column": model_config.text_pair_column,
        "max_length": model_config.max_length,
    }
    known_inputs = model_config.text_column is not None
    if known_inputs and args.text_pair_column and model_config.text_pair_column is None:
        raise UserError(
            f"the model was trained on single texts (column {model_config.text_column!r}), "
            "not on pairs; drop --text-pair-column"
        )
    given = {
        "text_column": args.text_column,
        "text_pair_column": args.text_pair_column,
        "max_length": args.max_length,
    }
    for key, value in given.items():
        if value:
            continue
        if trained[key] is not None or (known_inputs and key == "text_pair_column"):
            given[key] = trained[key]  # as the model was trained (checked on reading)
        elif run_config.get(key) is not None:
            value = given[key] = run_config[key]  # an older checkpoint: its run's settings
            wanted = int if key == "max_length" else str
            if type(value) is not wanted or (wanted is int and value < 1):
                flag = "--" + key.replace("_", "-")
                raise UserError(
                    f"the run's config.json has {key} {value!r}, which is not usable; pass {flag}"
                )
    text_column = given["text_column"] or "text"
    pair_column = given["text_pair_column"]
    max_length = given["max_length"] or 128
    return text_column, pair_column, max_length


def check_input_kind(
    path: Path, text_column: str, pair_column: str | None, flagged: bool = False
) -> None:
    """Pairs are read from rows: a .txt file (one single text per line) is refused for a
    pair model (or with `flagged`: when --text-pair-column asks for pairs)."""
    from isobn.errors import UserError

    if pair_column is not None and path.suffix.lower() in TEXT_SUFFIXES:
        why = "--text-pair-column asks for" if flagged else "the model was trained on"
        raise UserError(
            f"{why} text pairs (columns {text_column!r} and {pair_column!r}), and {path} "
            "holds single texts; pass a .csv, .tsv or .jsonl file with both columns"
        )


def read_inputs(path: Path, text_column: str, pair_column: str | None) -> list[Located]:
    """Rows of (where, text, text_pair) from .txt/.csv/.tsv/.jsonl, in file order (`where`:
    "FILE line N" for messages); one-line errors on bad files and bad rows (as `isobn
    train`)."""
    from isobn.errors import UserError
    from isobn.tasks import read_rows, text_value
    from isobn.tasks.files import ROW_SUFFIXES

    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return _read_lines(path)
    if suffix not in ROW_SUFFIXES:
        raise UserError(
            f"{path}: unsupported file type {suffix!r}; use .txt (one text per line), "
            ".csv, .tsv or .jsonl"
        )
    columns = [text_column] + ([pair_column] if pair_column else [])
    hint = "; pass --text-column (and --text-pair-column) to choose the columns"
    out = []
    for where, row in read_rows(path, columns, hint=hint):
        text = text_value(row[text_column], where, text_column)
        pair = text_value(row[pair_column], where, pair_column) if pair_column else None
        out.append((where, text, pair))
    return out


def _read_lines(path: Path) -> list[Located]:
    """One text per line of a UTF-8 text file (split at "\n" only, so form feeds and other
    Unicode line separators stay inside their line); blank lines (whitespace or invisible
    characters only: isobn.tasks.files.is_blank) are skipped with a warning."""
    from isobn.errors import UserError
    from isobn.tasks.files import data_file_problem, is_blank, read_text

    problem = data_file_problem(path, regular=False)  # a pipe is read once: fine
    if problem is not None:
        raise UserError(problem)
    lines = read_text(path).split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    rows, blank = [], []
    for number, line in enumerate(lines, 1):
        line = line.removesuffix("\r")
        if not is_blank(line):
            rows.append((f"{path} line {number}", line, None))
        else:
            blank.append(number)
    if not rows:
        raise UserError(f"{path} holds no texts; write one text per line")
    if blank:
        shown = ", ".join(map(str, blank[:10])) + (", ..." if len(blank) > 10 else "")
        logger.warning(
            "%s: skipped blank line(s) %s; there is one prediction per non-blank line", path, shown
        )
    return rows


def output_format(output: str | None) -> str:
    """The format of --output, named by its extension (`OUTPUT_FORMATS`); standard output
    gets JSON lines. An unknown extension is a one-line UserError."""
    from isobn.errors import UserError

    if not output:
        return "jsonl"
    suffix = Path(output).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise UserError(
            f"--output {output}: unknown format {suffix or '(no extension)'!r}; end the name "
            "with .jsonl (JSON lines), .json (one JSON array), .csv or .tsv"
        )
    return OUTPUT_FORMATS[suffix]


def check_output(output: str | None, input_path: Path) -> None:
    """Refuse an --output that cannot be written, before any inference runs."""
    from isobn.errors import UserError

    if not output:
        return
    path = Path(output)
    if path.is_dir():
        raise UserError(
            f"--output {path} is a directory; pass a file path, e.g. {path / 'predictions.jsonl'}"
        )
    if path.resolve() == input_path.resolve():
        raise UserError(f"--output {path} is the --input file; choose another --output")
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise UserError(
            f"--output {path}: folder {folder} {what}; create it or choose another --output"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(
            f"--output {path}: cannot write to folder {folder} (permission denied); "
            "choose another --output"
        )
    output_format(output)


def check_tsv_fields(rows: list[tuple[str, str | None]], label_names: list[str], output: str):
    """TSV is written as written (no quoting, as isobn reads it): a text or label holding a
    tab or a line break is refused before inference, naming its row."""
    from isobn.errors import UserError

    for number, values in enumerate([*rows, tuple(label_names)], 1):
        for value in values:
            if value is not None and any(c in value for c in "\t\n\r"):
                what = "a label name" if number > len(rows) else f"input row {number}"
                raise UserError(
                    f"--output {output}: {what} holds a tab or a line break, which TSV "
                    "cannot hold; write .csv or .jsonl instead"
                )


def run(args: argparse.Namespace) -> int:
    from isobn.errors import UserError
    from isobn.paths import check_directory
    from isobn.tasks import Example
    from isobn.training.data import encode
    from isobn.training.embeddings import predict
    from isobn.training.max_length import check_max_length
    from isobn.training.model import load_checkpoint, read_model_config
    from isobn.training.plain_checkpoint import (
        is_plain_directory,
        load_plain_checkpoint,
        read_plain_config,
    )

    if os.path.lexists(args.checkpoint):  # a missing one: named by checkpoint_and_run_config
        check_directory(
            args.checkpoint, "--checkpoint", "pass an `isobn train` --out directory or its best/"
        )
    plain = is_plain_directory(Path(args.checkpoint))
    if plain:  # isobn export, save_pretrained: no run beside it
        best, run_config = Path(args.checkpoint), {}
        model_config = read_plain_config(best, args.trust_remote_code)
    else:
        best, run_config = checkpoint_and_run_config(Path(args.checkpoint))
        model_config = read_model_config(best)  # a small JSON file: the weights load later
    text_column, pair_column, max_length = _settings(args, model_config, run_config)
    check_output(args.output, Path(args.input))
    check_input_kind(Path(args.input), text_column, pair_column, bool(args.text_pair_column))
    located = read_inputs(Path(args.input), text_column, pair_column)
    rows = [(text, pair) for _, text, pair in located]
    if output_format(args.output) == "tsv":
        check_tsv_fields(rows, model_config.label_names, args.output)
    load = load_plain_checkpoint if plain else load_checkpoint
    model, tokenizer = load(best, args.trust_remote_code)
    check_max_length(max_length, str(best), tokenizer, model.encoder.config, bool(pair_column))
    config = model.config
    examples = [Example(text, pair, 0.0 if config.regression else 0) for text, pair in rows]
    split = encode(examples, tokenizer, max_length, config.regression)
    columns = (text_column, pair_column)
    keep = check_tokenless(Path(args.input), located, examples, split, tokenizer, columns)
    if len(keep) < len(rows):
        rows = [rows[i] for i in keep]
        split = encode([examples[i] for i in keep], tokenizer, max_length, config.regression)
    try:
        logits = predict(model, split, args.batch_size, tokenizer.pad_token_id or 0)["logits"]
    except ValueError as error:  # a transformers classifier that refuses its input
        if not plain:
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else "ValueError"
        raise UserError(
            f"the classifier in {best} cannot read these texts ({first}); check that its "
            "tokenizer files are the model's own"
        ) from None
    write_records(_records(rows, logits, config), args.output)
    return 0


def check_tokenless(
    path: Path, located: list[Located], examples, split, tokenizer, columns: tuple
) -> list[int]:
    """The rows to predict: every row, unless a text tokenises to no token at all
    (isobn.training.data.tokenless: the model would see the same empty input for each),
    which is treated as an empty text is: a .txt line is skipped with a warning naming it,
    a row of a .csv/.tsv/.jsonl file is a one-line UserError naming its line."""
    from isobn.errors import UserError
    from isobn.training.data import describe_text, tokenless

    empty = tokenless(examples, split, tokenizer)
    if not empty:
        return list(range(len(located)))
    if path.suffix.lower() not in TEXT_SUFFIXES:
        index, text = empty[0]
        where, first, _ = located[index]
        column = columns[0] if text == first else columns[1]
        raise UserError(
            f"{where}: the text in column {column!r} becomes no token at all "
            f"({describe_text(text)}): the model's tokenizer drops every character of it; "
            "fill or drop the row"
        )
    skipped = {index for index, _ in empty}
    keep = [i for i in range(len(located)) if i not in skipped]
    if not keep:
        raise UserError(
            f"{path} holds no texts the model's tokenizer keeps (e.g. "
            f"{describe_text(empty[0][1])}); write one text per line"
        )
    lines = [located[i][0].rsplit(" ", 1)[1] for i, _ in empty]
    shown = ", ".join(lines[:10]) + (", ..." if len(lines) > 10 else "")
    logger.warning(
        "%s: skipped line(s) %s, which become no token at all (e.g. %s): the model's "
        "tokenizer drops every character of them; there is one prediction per other line",
        path, shown, describe_text(empty[0][1]),
    )  # fmt: skip
    return keep


def _records(rows: list[tuple[str, str | None]], logits, config) -> list[dict]:
    """One output record per input row, in input order, from (N, num_labels) logits: the
    text (and second text), the label as written in the training data and the class
    probabilities, or the regression prediction."""
    import torch

    records = []
    for (text, pair), row in zip(rows, torch.as_tensor(logits), strict=True):
        record = {"text": text} | ({"text_pair": pair} if pair is not None else {})
        if config.regression:
            records.append(record | {"prediction": float(row[0])})
        else:
            probs = row.softmax(-1)
            names = config.label_names or [str(i) for i in range(config.num_labels)]
            records.append(
                record
                | {
                    "label": names[int(probs.argmax())],
                    "probabilities": {n: round(float(p), 6) for n, p in zip(names, probs)},
                }
            )
    return records


def write_records(records: list[dict], output: str | None) -> None:
    """The records to ``output`` in the format its extension names (`output_format`),
    written to a temporary file beside it and renamed into place; JSON lines on standard
    output without."""
    from isobn.errors import UserError
    from isobn.training.safe_files import replaced_atomically

    fmt = output_format(output)
    if not output:
        _write(sys.stdout, records, fmt)
        return
    path = Path(output)
    if path.is_symlink():
        path = path.resolve()  # replace the file the link points to, not the link
    try:  # a new temporary file (never a link planted beside `path`), removed on failure
        with (
            replaced_atomically(path) as tmp,
            open(tmp, "w", encoding="utf-8", newline="") as handle,
        ):
            _write(handle, records, fmt)
    except OSError as error:
        raise UserError(
            f"cannot write --output {path} ({error.strerror or error}); choose another --output"
        ) from None


def _write(handle, records: list[dict], fmt: str) -> None:
    """JSON lines, one JSON array, or CSV / TSV rows without the probabilities (TSV as
    written: no quoting, fields checked by `check_tsv_fields`)."""
    if fmt in ("csv", "tsv"):
        fields = [k for k in records[0] if k != "probabilities"]
        dialect = (
            {"lineterminator": "\r\n"}
            if fmt == "csv"
            else {"delimiter": "\t", "quoting": csv.QUOTE_NONE, "quotechar": None,
                  "lineterminator": "\n"}
        )  # fmt: skip
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore", **dialect)
        writer.writeheader()
        writer.writerows(records)
    elif fmt == "json":
        handle.write(json_text.dumps(records, indent=1))
        handle.write("\n")
    else:
        for record in records:
            handle.write(json_text.dumps(record) + "\n")
