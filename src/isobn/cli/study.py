"""`isobn study STUDY.toml --out DIR`: a declared, resumable, parallel seed study."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from isobn.cli.options import add_setting
from isobn.training.config import KEEP_CHECKPOINTS_HELP, SHARD_HELP, TrainConfig


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "study",
        help="run a seed study declared in a TOML file and write RESULTS.md",
        description="Run every cell (task, size, method, seed) of STUDY.toml into DIR, skipping "
        "finished cells; interrupt at any time and rerun to continue. Then write results.json, "
        "results.csv, RESULTS.md and figures in DIR.",
    )
    parser.add_argument("study", help="study file (TOML), e.g. studies/offline.toml")
    add_setting(parser, TrainConfig, "out")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="cells run at once (CPU threads divided between "
        "them; one GPU each on a GPU machine); default 1",
    )
    parser.add_argument("--threads", type=int, help="CPU threads per job (default: cores / jobs)")
    parser.add_argument("--shard", help=SHARD_HELP)
    parser.add_argument("--max-cells", type=int, help="stop after this many cells per job")
    parser.add_argument(
        "--blocks",
        metavar="NAMES",
        help="comma-separated block names: run (or --plan) only their cells, e.g. ablation",
    )
    parser.add_argument("--keep-checkpoints", action="store_true", help=KEEP_CHECKPOINTS_HELP)
    parser.add_argument(
        "--plan", action="store_true", help="list the cells and their state; train nothing"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite the results from finished cells; train nothing",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from isobn.errors import UserError
    from isobn.study.runner import cell_path, run_jobs
    from isobn.study.spec import load_study
    from isobn.training.experiment import parse_shard

    for name in ("jobs", "threads", "max_cells"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    shard = parse_shard(args.shard)
    study = load_study(args.study)
    blocks = study.block_names(args.blocks)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory; choose another --out")
    if args.plan:
        cells = study.cells(blocks)
        done = sum(cell_path(out, c).is_file() for c in cells)
        for cell in cells:
            state = "done" if cell_path(out, cell).is_file() else "todo"
            print(f"{state}  {cell.key}  ({', '.join(cell.blocks)})")
        print(f"{len(cells)} cells, {done} finished")
        return 0
    command = " ".join(["isobn", *sys.argv[1:]])
    if not args.report_only:
        session = run_jobs(
            study,
            out,
            args.jobs,
            shard,
            args.keep_checkpoints,
            args.max_cells,
            args.threads,
            command,
            blocks,
        )
        print(
            f"{session['cells_finished']} cells finished in {session['wall_seconds']:.0f} s",
            file=sys.stderr,
        )
    from isobn.study.pretrained import ensure_pretrained_isotropy
    from isobn.study.results import write_study_results

    ensure_pretrained_isotropy(study, out)

    paths = write_study_results(study, out)
    for path in paths:
        print(f"written: {path}")
    return 0
