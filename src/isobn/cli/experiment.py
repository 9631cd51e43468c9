"""`isobn experiment`: tasks x norms x seeds, resumable and shardable, with result tables."""

from __future__ import annotations

import argparse

from isobn.cli.options import (
    add_data_options,
    add_model_options,
    add_norm_options,
    add_training_options,
    config_values,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "experiment",
        help="compare norms over seeds and tasks",
        description="Run every (task, norm, seed) into OUT/TASK/NORM/seedS, skipping finished "
        "runs, then write results.json, results.csv and results.md in OUT.",
    )
    parser.add_argument("--tasks", default="mr", help="comma-separated task names")
    parser.add_argument("--norms", default="none,isobn", help="comma-separated norms")
    parser.add_argument("--seeds", default="1,2,3,4,5", help="comma-separated seeds")
    parser.add_argument("--out", required=True, help="experiment directory (shared by shards)")
    parser.add_argument("--shard", help="K/N: run every N-th run starting at the K-th")
    add_data_options(parser)
    add_model_options(parser)
    add_norm_options(parser, multiple=True)
    add_training_options(parser, with_seed=False)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from isobn.experiment import parse_list, parse_seeds, parse_shard, run_experiment
    from isobn.model import NORMS
    from isobn.report import markdown
    from isobn.train import TrainConfig

    shard = parse_shard(args.shard)
    tasks = parse_list(args.tasks, "tasks")
    norms = parse_list(args.norms, "norms")
    for norm in norms:
        if norm not in NORMS:
            from isobn.errors import UserError

            raise UserError(f"unknown norm {norm!r} in --norms: choose from {', '.join(NORMS)}")
    seeds = parse_seeds(args.seeds)
    values = config_values(args)
    values.pop("task", None)
    base = TrainConfig(**values)
    results = run_experiment(base, tasks, norms, seeds, shard)
    print(markdown(results))
    print(f"tables written to {args.out}/results.md, results.csv, results.json")
    return 0
