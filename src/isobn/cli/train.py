"""`isobn train`: fine-tune one model on one task."""

from __future__ import annotations

import argparse
import os

from isobn.cli.options import add_method_options, add_options, config_from_args
from isobn.training.config import TrainConfig


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune an encoder with or without IsoBN",
        description="Fine-tune an encoder on a task; writes metrics.json, config.json, "
        "log.jsonl and the best checkpoint under --out.",
    )
    add_options(parser, TrainConfig)
    add_method_options(parser, TrainConfig)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from isobn import json_text
    from isobn.training.train import train

    result = train(config_from_args(TrainConfig, args))
    if os.environ.get("RANK", "0") == "0":
        print(json_text.dumps(result, indent=2))
    return 0
