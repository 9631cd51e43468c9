"""`isobn predict`: label a file of texts with a checkpoint written by `isobn train`."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict labels for a file of texts",
        description="Read texts (.txt: one per line; .csv/.tsv/.jsonl: --text-column) and "
        "write one prediction per row (JSON lines, or CSV when --output ends in .csv).",
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="a run directory of `isobn train` or its best/ checkpoint",
    )
    parser.add_argument("--input", required=True, help="file of texts")
    parser.add_argument("--output", help="output file (default: standard output)")
    parser.add_argument("--text-column", help="default: the column the model was trained on")
    parser.add_argument("--text-pair-column")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, help="default: the training max length")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.set_defaults(run=run)


def _checkpoint_and_run_config(path: Path) -> tuple[Path, dict]:
    from isobn.checkpoint import resolve_directory
    from isobn.errors import UserError

    if (path / "best").exists() or (path / "best.old").exists():
        run_dir, best = path, resolve_directory(path / "best")
    else:
        run_dir, best = path.parent, path
    if best is None or not best.is_dir():
        raise UserError(f"checkpoint {path} does not exist: pass an `isobn train` --out directory")
    config_file = run_dir / "config.json"
    run_config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    return best, run_config


def read_inputs(path: Path, text_column: str, pair_column: str | None):
    """Rows of (text, text_pair) from .txt/.csv/.tsv/.jsonl; one-line errors on bad files."""
    from isobn import tasks
    from isobn.errors import UserError

    if not path.is_file():
        raise UserError(f"input file {path} does not exist: pass an existing --input")
    text = tasks._read_text(path)
    suffix = path.suffix.lower()
    if suffix in (".txt", ""):
        return [(line, None) for line in text.splitlines() if line.strip()]
    if suffix in (".csv", ".tsv"):
        _, rows = tasks._parse_delimited(path, text, "," if suffix == ".csv" else "\t")
    elif suffix in (".jsonl", ".json", ".ndjson"):
        rows = tasks._parse_json_rows(path, text, suffix)
    else:
        raise UserError(f"{path}: unsupported file type {suffix!r}; use .txt, .csv, .tsv, .jsonl")
    out = []
    for where, row in rows:
        for column in filter(None, (text_column, pair_column)):
            if column not in row:
                raise UserError(
                    f"{where}: no column {column!r}; available: {', '.join(row)}; set --text-column"
                )
        out.append((str(row[text_column]), str(row[pair_column]) if pair_column else None))
    if not out:
        raise UserError(f"{path} holds no texts: add rows")
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from isobn.data import collate, encode, sorted_batches
    from isobn.errors import UserError
    from isobn.model import load_checkpoint
    from isobn.tasks import Example

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be a positive integer, got {args.batch_size}")
    best, run_config = _checkpoint_and_run_config(Path(args.checkpoint))
    text_column = args.text_column or run_config.get("text_column") or "text"
    pair_column = args.text_pair_column or run_config.get("text_pair_column")
    max_length = args.max_length or run_config.get("max_length") or 128
    rows = read_inputs(Path(args.input), text_column, pair_column)
    model, tokenizer = load_checkpoint(best, args.trust_remote_code)
    config = model.config
    examples = [Example(text, pair, 0.0 if config.regression else 0) for text, pair in rows]
    split = encode(examples, tokenizer, max_length, config.regression)
    pad_id = tokenizer.pad_token_id or 0
    logits = torch.zeros(len(split), config.num_labels)
    with torch.inference_mode():
        for indices in sorted_batches(split.lengths, args.batch_size):
            batch = collate(split, indices, pad_id)
            batch.pop("labels")
            logits[torch.as_tensor(indices)] = model(**batch).logits.float()
    records = []
    for (text, _), row in zip(rows, logits):
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
    write_records(records, args.output)
    return 0


def write_records(records: list[dict], output: str | None) -> None:
    if output and output.endswith(".csv"):
        with open(output, "w", newline="") as handle:
            fields = [k for k in records[0] if k != "probabilities"]
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(records)
        return
    handle = open(output, "w") if output else sys.stdout
    try:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    finally:
        if output:
            handle.close()
