"""`isobn analyze`: isotropy of a model's sentence embeddings, or of several models compared."""

from __future__ import annotations

import argparse

from isobn.cli.options import add_data_options


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
    parser.add_argument("--out", required=True, help="output directory")
    group = parser.add_argument_group("models")
    which = group.add_mutually_exclusive_group()
    which.add_argument(
        "--model",
        default="minilm",
        help="one model: `minilm` (default), a model directory, a hub name or an isobn run",
    )
    which.add_argument(
        "--compare",
        nargs="+",
        metavar="[LABEL=]MODEL",
        help="several models side by side, e.g. pretrained=minilm none=runs/a isobn=runs/b",
    )
    group.add_argument(
        "--pooling",
        choices=("cls", "pooler", "mean", "all"),
        help="embedding(s) to measure; default: a checkpoint's own pooling, else pooler",
    )
    group.add_argument(
        "--layers",
        choices=("last", "all"),
        default="last",
        help="all: also [CLS] and mean of tokens of every layer (default last)",
    )
    group.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow model code from the model directory/hub (off by default)",
    )
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
    group.add_argument("--max-length", type=int, default=128, help="tokens per text")
    group.add_argument("--batch-size", type=int, default=64)
    group.add_argument("--seed", type=int, default=0, help="of the subsample")
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
