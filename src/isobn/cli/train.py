"""`isobn train`: fine-tune one model on one task."""

from __future__ import annotations

import argparse
import json
import os

from isobn.cli.options import (
    add_data_options,
    add_model_options,
    add_norm_options,
    add_training_options,
    config_values,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune an encoder with or without IsoBN",
        description="Fine-tune an encoder on a task; writes metrics.json, config.json, "
        "log.jsonl and the best checkpoint under --out.",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint in --out"
    )
    add_data_options(parser)
    add_model_options(parser)
    add_norm_options(parser)
    add_training_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from isobn.train import TrainConfig, train

    result = train(TrainConfig(**config_values(args)))
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps(result, indent=2))
    return 0
