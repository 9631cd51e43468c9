"""`isobn experiment`: tasks x methods x seeds, resumable and shardable, with result tables."""

from __future__ import annotations

import argparse

from isobn.cli.options import add_method_options, add_options, add_setting, config_values
from isobn.training.config import KEEP_CHECKPOINTS_HELP, SHARD_HELP, TrainConfig


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "experiment",
        help="compare methods over seeds and tasks",
        description="Run every (task, method, seed) into OUT/TASK/METHOD/seedS, skipping "
        "finished runs, then write results.json, results.csv and results.md in OUT.",
    )
    group = parser.add_argument_group("grid")
    group.add_argument(
        "--tasks",
        help="comma-separated task names (default mr; not with --train: a run on files is "
        "named by --name or the training file)",
    )
    group.add_argument(
        "--seeds", default="1,2,3,4,5", help="comma-separated seeds (default 1,2,3,4,5)"
    )
    add_setting(group, TrainConfig, "out")
    group.add_argument("--shard", help=SHARD_HELP)
    group.add_argument("--keep-checkpoints", action="store_true", help=KEEP_CHECKPOINTS_HELP)
    add_options(parser, TrainConfig, exclude={"task", "seed", "out", "resume", "keep_last"})
    add_method_options(parser, TrainConfig, multiple=True)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from isobn.errors import UserError
    from isobn.training.config import DEFAULT_TASK
    from isobn.training.experiment import parse_seeds, parse_shard, parse_tasks, run_experiment
    from isobn.training.report import markdown

    shard = parse_shard(args.shard)
    seeds = parse_seeds(args.seeds)
    methods = parse_methods(args)
    values = {k: v for k, v in config_values(args).items() if k not in ("task", "method")}
    if args.train_file and args.tasks is not None:
        raise UserError(
            "--tasks names tasks, --train gives the data: drop one of them "
            "(--name names the data of the files)"
        )
    if args.train_file:
        tasks = [None]  # the files of --train/--dev, named by --name or the training file
    else:
        tasks = parse_tasks(DEFAULT_TASK if args.tasks is None else args.tasks)
    base = TrainConfig(**values, keep_last=args.keep_checkpoints)
    results = run_experiment(base, tasks, methods, seeds, shard, keep_best=args.keep_checkpoints)
    print(markdown(results))
    print(f"tables written to {args.out}/results.md, results.csv, results.json")
    return 0


def parse_methods(args: argparse.Namespace) -> list[str]:
    """The canonical specs of --methods, each once."""
    from isobn.errors import UserError
    from isobn.methods import canonical, split_methods

    texts = split_methods(args.methods)
    if not texts:
        raise UserError("--methods is empty: give a comma-separated list, e.g. none,isobn")
    methods = [canonical(text, "--methods") for text in texts]
    if len(set(methods)) != len(methods):
        raise UserError(f"--methods names a method twice: {', '.join(methods)}")
    return methods
