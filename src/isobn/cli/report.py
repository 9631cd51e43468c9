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
    from isobn.training.safe_files import all_or_none

    directory = Path(args.directory)
    if not directory.is_dir() and not os.path.lexists(directory):
        raise UserError(f"{directory} is not a directory: pass an `isobn experiment` --out")
    check_directory(directory, "the directory", "pass an `isobn experiment` --out")
    runs = collect_runs(directory)
    if not runs:
        raise UserError(f"no finished runs (metrics.json) below {directory}: run them first")
    with all_or_none():  # tables and figures: a full disk leaves the earlier set whole
        results = write_results(directory)
        drawn = [] if args.no_figures else draw_figures(directory, runs)
    print(markdown(results))
    for path in drawn:
        print(f"figure: {path}")
    print(f"tables written to {directory}/results.md, results.csv, results.json")
    return 0


def draw_figures(directory: Path, runs: list[dict]) -> list[Path]:
    """The learning and isotropy curves of `runs` in DIRECTORY/figures (none without
    matplotlib)."""
    from isobn.analysis.figures import can_draw, plot_training_curves
    from isobn.training.safe_files import make_folder

    if not can_draw():
        return []
    figures = make_folder(directory, "figures")  # never through a planted link
    return list(plot_training_curves([directory / run["run_dir"] for run in runs], figures))
