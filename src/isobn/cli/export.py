"""`isobn export`: write a model that loads without isobn (transformers, pipeline, ONNX)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from isobn.cli.options import add_setting
from isobn.training.config import TrainConfig

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a plain transformers model (and ONNX) that loads without isobn",
        description="Fold the eval-time transform (IsoBN, whitening, BatchNorm) into the "
        "head's linear layer and write a directory that AutoModelForSequenceClassification, "
        "AutoTokenizer and pipeline('text-classification') load without isobn, with the run's "
        "label names. RUN is a run directory of `isobn train` (or its best/), a "
        "save_pretrained directory (IsoBN attached or not), or a peft adapter directory "
        "(merged).",
    )
    parser.add_argument("run_directory", metavar="RUN", help="the run or model directory to export")
    add_setting(parser, TrainConfig, "out")  # required: a new or empty directory
    parser.add_argument(
        "--onnx",
        action="store_true",
        help="also write model.onnx (dynamic batch and sequence axes; needs isobn[onnx])",
    )
    add_setting(parser, TrainConfig, "trust_remote_code")
    parser.set_defaults(run=run)


@contextmanager
def no_progress_bars() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def run(args: argparse.Namespace) -> int:
    from isobn.training.export import check_out, load_plain, write_export

    out = Path(args.out)
    check_out(out)  # before the model loads
    if args.onnx:
        from isobn.training.onnx_export import check_onnx

        check_onnx()
    with no_progress_bars():  # transformers' loading and writing bars: noise here
        plain = load_plain(Path(args.run_directory), args.trust_remote_code)
        write_export(plain, out, onnx=args.onnx)
    logger.info("wrote %s (%s)", out, type(plain.model).__name__)
    return 0
