"""`isobn analyze`: isotropy of a model's sentence embeddings, or of several models compared."""

from __future__ import annotations

import argparse

from isobn.analysis.config import POOLING_CHOICES
from isobn.cli.options import add_data_options, add_setting
from isobn.training.config import TrainConfig


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="measure and plot the isotropy of sentence embeddings",
        description="Embed one split of a task and measure how isotropic the embeddings are; "
        "writes isotropy.json, PNG figures and report.md under --out. Models are `minilm`, a "
        "model directory or hub name, or an `isobn train` run (its directory or best/); "
        "checkpoints are measured before and after their method's transform (the identity "
        "for a method without a norm).",
    )
    add_setting(parser, TrainConfig, "out")
    group = parser.add_argument_group("models")
    which = group.add_mutually_exclusive_group()
    add_setting(which, TrainConfig, "model")
    which.add_argument(
        "--compare",
        nargs="+",
        metavar="[LABEL=]MODEL",
        help="several models side by side, e.g. pretrained=minilm none=runs/a isobn=runs/b",
    )
    add_setting(
        group,
        TrainConfig,
        "pooling",
        default=None,
        default_text="a checkpoint's own pooling, else pooler",
        choices=POOLING_CHOICES,
    )
    group.add_argument(
        "--layers",
        choices=("last", "all"),
        default="last",
        help="all: also [CLS] and mean of tokens of every layer (default last)",
    )
    add_setting(group, TrainConfig, "trust_remote_code")
    add_data_options(parser)
    group = parser.add_argument_group("analysis")
    group.add_argument(
        "--split",
        default="train",
        help="train (default: the paper analyses the training-set embeddings), dev or test",
    )
    group.add_argument(
        "--max-examples",
        type=int,
        default=2000,
        help="deterministic subsample of the split (default 2000; 0: every example)",
    )
    add_setting(group, TrainConfig, "max_length", default=128)
    add_setting(group, TrainConfig, "batch_size", default=64)
    add_setting(group, TrainConfig, "seed", default=0)
    group.add_argument("--cpu", action="store_true", help="use the CPU even with a GPU")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from isobn.analysis import AnalysisConfig, analyze

    values = {k: v for k, v in vars(args).items() if k in AnalysisConfig.__dataclass_fields__}
    values["models"] = args.compare or [args.model]
    if values["max_examples"] == 0:
        values["max_examples"] = None
    payload = analyze(AnalysisConfig(**values))
    for line in transform_lines(payload):
        print(line)
    print(f"wrote isotropy.json, report.md and figures to {args.out}")
    return 0


def transform_lines(payload: dict) -> list[str]:
    """A line per checkpoint of isotropy.json: its isotropy before and after its method's
    transform (the identity for a method without a norm)."""
    from isobn.isotropy_stats import describe_transform

    lines = []
    for m in payload["models"]:
        if m.get("before"):
            reports = m["reports"]
            text = describe_transform(
                m["method"], m["transform"], reports[m["before"]], reports[m["after"]]
            )
            lines.append(f"{m['label']}: {text}")
    return lines
