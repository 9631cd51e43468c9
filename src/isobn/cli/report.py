"""`isobn report DIR`: re-render the tables (and curves) from the finished runs in DIR."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="tables and curves from finished runs",
        description="Rewrite results.{json,csv,md} and draw learning and isotropy curves "
        "from the runs below DIR (an `isobn experiment` directory).",
    )
    parser.add_argument("directory", help="experiment directory")
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from isobn.errors import UserError
    from isobn.paths import check_directory
    from isobn.training.report import collect_runs, markdown, write_results

    directory = Path(args.directory)
    if not directory.is_dir() and not os.path.lexists(directory):
        raise UserError(f"{directory} is not a directory: pass an `isobn experiment` --out")
    check_directory(directory, "the directory", "pass an `isobn experiment` --out")
    runs = collect_runs(directory)
    if not runs:
        raise UserError(f"no finished runs (metrics.json) below {directory}: run them first")
    results = write_results(directory)
    print(markdown(results))
    if not args.no_figures:
        from isobn.analysis.figures import can_draw, plot_training_curves

        if can_draw():
            run_dirs = [directory / run["run_dir"] for run in runs]
            from isobn.training.safe_files import make_folder

            figures = make_folder(directory, "figures")  # never through a planted link
            for path in plot_training_curves(run_dirs, figures):
                print(f"figure: {path}")
    print(f"tables written to {directory}/results.md, results.csv, results.json")
    return 0
