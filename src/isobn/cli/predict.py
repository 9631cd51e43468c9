"""`isobn predict`: label a file of texts with a checkpoint written by `isobn train`.

The input contract is train's: CSV/TSV/JSONL rows are read by `isobn.tasks.read_rows` and every
text is checked by `isobn.tasks.text_value` (null, an object or an empty text is a one-line error
with the file and line); `--max-length` gets train's check. A `.txt` file holds one text per
line (lines end at "\n" only) and gives exactly one prediction per non-blank line, in input
order; blank lines are skipped, as in CSV and JSONL files, with a warning naming them. The
`--output` file is checked before the model is loaded and written atomically.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from pathlib import Path

from isobn.cli.options import add_setting
from isobn.training.config import TrainConfig

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", "")  # one text per line


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict labels for a file of texts",
        description="Read texts (.txt: one per line, blank lines skipped; .csv/.tsv/.jsonl: "
        "--text-column) and write one prediction per text, in input order (JSON lines, or CSV "
        "when --output ends in .csv).",
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="a run directory of `isobn train` or its best/ checkpoint",
    )
    parser.add_argument("--input", required=True, help="file of texts")
    parser.add_argument("--output", help="output file (default: standard output)")
    for name, text in (("text_column", "the training run's, else text"),
                       ("text_pair_column", "the training run's"),
                       ("max_length", "the training run's")):  # fmt: skip
        add_setting(parser, TrainConfig, name, default=None, default_text=text)
    add_setting(parser, TrainConfig, "batch_size", default=64)
    add_setting(parser, TrainConfig, "trust_remote_code")
    parser.set_defaults(run=run)


def _checkpoint_and_run_config(path: Path) -> tuple[Path, dict]:
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
        run_config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(
            f"cannot read {config_file} ({error}); pass --text-column and --max-length with "
            f"the checkpoint {best} instead of its run directory"
        ) from None
    return best, run_config if isinstance(run_config, dict) else {}


def _settings(args: argparse.Namespace, run_config: dict) -> tuple[str, str | None, int]:
    """(text column, pair column, max length): the arguments, else the training run's."""
    from isobn.errors import UserError

    for name in ("batch_size", "max_length"):
        value = getattr(args, name)
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} must be a positive integer, got {value}")
    given = {
        "text_column": args.text_column,
        "text_pair_column": args.text_pair_column,
        "max_length": args.max_length,
    }
    for key, value in given.items():
        if not value and run_config.get(key) is not None:
            value = given[key] = run_config[key]  # as the model was trained
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


def read_inputs(path: Path, text_column: str, pair_column: str | None):
    """Rows of (text, text_pair) from .txt/.csv/.tsv/.jsonl, in file order; one-line errors
    on bad files and bad rows (as `isobn train`)."""
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
        out.append((text, pair))
    return out


def _read_lines(path: Path) -> list[tuple[str, None]]:
    """One text per line of a UTF-8 text file (split at "\n" only, so form feeds and other
    Unicode line separators stay inside their line); blank lines are skipped with a warning."""
    from isobn.errors import UserError
    from isobn.tasks.files import read_text

    lines = read_text(path).split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    rows, blank = [], []
    for number, line in enumerate(lines, 1):
        line = line.removesuffix("\r")
        if line.strip():
            rows.append((line, None))
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


def run(args: argparse.Namespace) -> int:
    from isobn.tasks import Example
    from isobn.training.data import encode
    from isobn.training.embeddings import predict
    from isobn.training.max_length import check_max_length
    from isobn.training.model import load_checkpoint

    best, run_config = _checkpoint_and_run_config(Path(args.checkpoint))
    text_column, pair_column, max_length = _settings(args, run_config)
    check_output(args.output, Path(args.input))
    rows = read_inputs(Path(args.input), text_column, pair_column)
    model, tokenizer = load_checkpoint(best, args.trust_remote_code)
    check_max_length(max_length, str(best), tokenizer, model.encoder.config, bool(pair_column))
    config = model.config
    examples = [Example(text, pair, 0.0 if config.regression else 0) for text, pair in rows]
    split = encode(examples, tokenizer, max_length, config.regression)
    logits = predict(model, split, args.batch_size, tokenizer.pad_token_id or 0)["logits"]
    write_records(_records(rows, logits, config), args.output)
    return 0


def _records(rows: list[tuple[str, str | None]], logits, config) -> list[dict]:
    """One output record per input row, in input order, from (N, num_labels) logits."""
    import torch

    records = []
    for (text, _), row in zip(rows, torch.as_tensor(logits), strict=True):
        if config.regression:
            records.append({"text": text, "prediction": float(row[0])})
        else:
            probs = row.softmax(-1)
            names = config.label_names or [str(i) for i in range(config.num_labels)]
            records.append(
                {
                    "text": text,
                    "label": names[int(probs.argmax())],
                    "probabilities": {n: round(float(p), 6) for n, p in zip(names, probs)},
                }
            )
    return records


def write_records(records: list[dict], output: str | None) -> None:
    """JSON lines (CSV without the probabilities when ``output`` ends in .csv) to ``output``,
    written to a temporary file beside it and renamed into place; standard output without."""
    from isobn.errors import UserError

    if not output:
        _write(sys.stdout, records, csv_format=False)
        return
    path = Path(output)
    if path.is_symlink():
        path = path.resolve()  # replace the file the link points to, not the link
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", newline="" if output.endswith(".csv") else None) as handle:
            _write(handle, records, csv_format=output.endswith(".csv"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise UserError(
            f"cannot write --output {path} ({error.strerror or error}); choose another --output"
        ) from None
    except BaseException:  # Ctrl-C while writing: leave no half-written file behind
        tmp.unlink(missing_ok=True)
        raise


def _write(handle, records: list[dict], csv_format: bool) -> None:
    if csv_format:
        fields = [k for k in records[0] if k != "probabilities"]
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
        return
    for record in records:
        handle.write(json.dumps(record) + "\n")
