"""Options shared by `train`, `experiment` and `analyze`, and their mapping to TrainConfig."""

from __future__ import annotations

import argparse
from dataclasses import fields

from isobn.model import NORMS, POOLINGS


def add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--task",
        default="mr",
        help="GLUE task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli) or an "
        "offline task (mr, trec, sms-spam); default mr",
    )
    group.add_argument("--data-dir", help="GLUE in the original TSV layout (else: datasets hub)")
    group.add_argument(
        "--train",
        dest="train_file",
        metavar="FILE",
        help="CSV/TSV/JSONL training file (with --dev) instead of --task",
    )
    group.add_argument("--dev", dest="dev_file", metavar="FILE")
    group.add_argument("--test", dest="test_file", metavar="FILE")
    group.add_argument("--text-column", default="text")
    group.add_argument("--text-pair-column")
    group.add_argument("--label-column", default="label")
    group.add_argument("--regression", action="store_true", help="numeric labels, MSE loss")
    group.add_argument("--max-train", type=int, help="stratified subsample of the training set")
    group.add_argument("--max-eval", type=int, help="stratified subsample of each dev/test split")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default="minilm",
        help="`minilm` (packaged, default), a model directory or a hub name",
    )
    group.add_argument("--pooling", default="pooler", choices=POOLINGS)
    group.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow model code from the model directory/hub (off by default)",
    )


def add_norm_options(parser: argparse.ArgumentParser, multiple: bool = False) -> None:
    group = parser.add_argument_group("norm")
    if not multiple:
        group.add_argument("--norm", default="isobn", choices=NORMS)
    group.add_argument("--isobn-beta", type=float, default=0.5)
    group.add_argument("--isobn-momentum", type=float, default=0.05)
    group.add_argument(
        "--isobn-no-corr",
        dest="isobn_correlation",
        action="store_false",
        help="ablation: gamma = 1 (std only)",
    )


def add_training_options(parser: argparse.ArgumentParser, with_seed: bool = True) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=3)
    group.add_argument("--batch-size", type=int, default=32)
    group.add_argument("--eval-batch-size", type=int, default=128)
    group.add_argument("--lr", dest="learning_rate", type=float, default=2e-5)
    group.add_argument("--weight-decay", type=float, default=0.01)
    group.add_argument("--warmup-ratio", type=float, default=0.1)
    group.add_argument("--grad-accum", type=int, default=1)
    group.add_argument("--max-grad-norm", type=float, default=1.0)
    group.add_argument("--max-length", type=int, default=128)
    group.add_argument("--dropout", type=float, help="classifier dropout (default: encoder's)")
    group.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    group.add_argument("--eval-every-steps", type=int, help="also evaluate every N steps")
    group.add_argument("--patience", type=int, help="early stopping after N evaluations")
    group.add_argument("--save-every-steps", type=int, help="resume points every N steps")
    group.add_argument("--log-every-steps", type=int, default=20)
    group.add_argument(
        "--isotropy-examples",
        type=int,
        default=2000,
        help="dev rows whose isotropy is logged at each evaluation",
    )
    group.add_argument("--cpu", action="store_true", help="use the CPU even with a GPU")
    if with_seed:
        group.add_argument("--seed", type=int, default=42)


def config_values(args: argparse.Namespace) -> dict:
    """The TrainConfig fields present in parsed arguments."""
    from isobn.train import TrainConfig

    names = {f.name for f in fields(TrainConfig)}
    return {k: v for k, v in vars(args).items() if k in names}
