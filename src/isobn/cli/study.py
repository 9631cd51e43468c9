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
    parser.add_argument(
        "study",
        nargs="?",
        help="study file (TOML), e.g. studies/offline.toml, or the name of a study that ships "
        "with isobn, e.g. offline (see --list)",
    )
    add_setting(
        parser,
        TrainConfig,
        "out",
        default=None,
        default_text="none, required to run; with --backend ray on a cluster, a directory on "
        "storage that every node mounts at the same path",
    )
    add_setting(
        parser,
        TrainConfig,
        "data_dir",
        default=None,
        default_text="the study file's; given, it is every GLUE task's, e.g. glue_data holding "
        "CoLA/train.tsv ...; pass it again on every later command for the same --out",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the studies that ship with isobn, and exit"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="cells run at once (the CPU cores divided between them and the study jobs "
        "already running on this host; the GPUs shared, several jobs per GPU); default 1",
    )
    parser.add_argument(
        "--threads", type=int, help="CPU threads per job (default: cores / jobs on this host)"
    )
    _add_ray_options(parser)
    _add_selection_options(parser)
    parser.set_defaults(run=run)


def _add_ray_options(parser: argparse.ArgumentParser) -> None:
    ray = parser.add_argument_group(
        "Ray", "run each cell as a Ray task (pip install 'isobn[ray]'); retried if its worker dies"
    )
    ray.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local: processes on this machine (default); ray: Ray tasks",
    )
    ray.add_argument(
        "--address",
        help="Ray cluster: auto (started with `ray start` on this machine), HOST:PORT (as "
        "`ray start --head` prints it) or ray://HOST:10001 (Ray Client); default: the "
        "cluster RAY_ADDRESS names when it is set, else a new local Ray sized to this machine",
    )
    ray.add_argument(
        "--connect-timeout",
        type=float,
        metavar="SECONDS",
        help="give up on reaching the --address cluster after this long; default 60",
    )
    ray.add_argument(
        "--cpus-per-cell", type=int, help="CPUs (torch threads) of each cell; default 1"
    )
    ray.add_argument(
        "--gpus-per-cell",
        type=float,
        help="GPUs of each cell, e.g. 0.25 to run 4 cells on one GPU; default 1 on a cluster "
        "with GPUs, else 0",
    )
    ray.add_argument(
        "--max-retries",
        type=int,
        help="retries of a cell whose worker or node died (it resumes from its checkpoint); "
        "default 3",
    )


def _add_selection_options(parser: argparse.ArgumentParser) -> None:
    """Which cells run, what they keep, and the modes that train nothing."""
    parser.add_argument("--shard", help=SHARD_HELP)
    parser.add_argument(
        "--max-cells", type=int, help="stop after this many cells per job (Ray: in all)"
    )
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


def run(args: argparse.Namespace) -> int:
    from isobn.errors import UserError
    from isobn.study.packaged import describe, packaged_studies, resolve_study
    from isobn.study.spec import load_study, with_data_dir
    from isobn.training.experiment import parse_shard

    if args.list:
        for name, path in packaged_studies().items():
            print(f"{name}  {describe(path)}  ({path})")
        return 0
    if args.study is None or args.out is None:
        missing = [n for n, v in (("STUDY", args.study), ("--out", args.out)) if v is None]
        raise UserError(
            f"the following arguments are required: {', '.join(missing)} "
            "(or --list to see the studies that ship with isobn)"
        )
    _check_counts(args)
    ray_options = _ray_options(args)
    shard = parse_shard(args.shard)
    study = load_study(resolve_study(args.study))
    if args.data_dir is not None:
        study = with_data_dir(study, args.data_dir)
    blocks = study.block_names(args.blocks)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory; choose another --out")
    if args.plan:
        _print_plan(study, out, blocks)
        return 0
    if not args.report_only:
        _require_assets(study, blocks)
        _run_cells(args, study, out, ray_options, shard, blocks)
    from isobn.study.pretrained import ensure_pretrained_isotropy
    from isobn.study.results import write_study_results

    ensure_pretrained_isotropy(study, out)

    paths = write_study_results(study, out)
    for path in paths:
        print(f"written: {path}")
    return 0


# processes or threads: more is a typo (torch's thread count is a C integer)
MAX_JOBS_OR_THREADS = 1024


def _check_counts(args: argparse.Namespace) -> None:
    """A one-line UserError for a count below 1, or a --jobs/--threads above
    MAX_JOBS_OR_THREADS, before anything is read or written."""
    from isobn.errors import UserError

    for name in ("jobs", "threads", "max_cells", "cpus_per_cell"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    for name in ("jobs", "threads"):
        value = getattr(args, name)
        if value is not None and value > MAX_JOBS_OR_THREADS:
            raise UserError(
                f"--{name} must be a whole number from 1 to {MAX_JOBS_OR_THREADS}, got {value}"
            )


def _require_assets(study, blocks) -> None:
    """The packaged model and the offline tasks' packages the cells need, all named in one
    line before any cell starts."""
    from isobn.assets import require
    from isobn.errors import UserError
    from isobn.tasks import task_key

    named = []
    for name in sorted({cell.task for cell in study.cells(blocks)}):
        if study.tasks.get(name, {}).get("train_file"):
            continue  # a file task
        try:
            named.append(task_key(name))
        except UserError:
            continue  # not a registered task: the study's own check names it
    require(study.model, named)


def _print_plan(study, out: Path, blocks) -> None:
    from isobn.study.binding import cell_states

    cells = study.cells(blocks)
    states = cell_states(study, out, cells)  # the fingerprint check of runs and --report-only
    for cell in cells:
        state, _, why = states[cell.key].partition(": ")
        print(f"{state}  {cell.key}  ({', '.join(cell.blocks)})" + (f"  {why}" if why else ""))
    for block in study.blocks:  # a grid's size and cells; a study without grid plans as before
        if block.grid and (blocks is None or block.name in blocks):
            print(_block_plan(block))
    done, stale = (sum(s.startswith(k) for s in states.values()) for k in ("done", "stale"))
    print(f"{len(cells)} cells, {done} finished" + (f", {stale} stale" if stale else ""))
    if stale:
        print(
            "a stale cell finished with other settings or data: a run refuses it; restore "
            "the study file and data, or choose another --out"
        )
    _print_run_refusal(study)


def _print_run_refusal(study) -> None:
    """A task file that is missing now (or a directory) leaves finished cells `done` (their
    records are what they are, and --report-only tables them) but a run refuses the whole
    study: --plan says so, in the run's words."""
    from isobn.errors import UserError
    from isobn.study.spec import check_task_files

    try:
        check_task_files(study)
    except UserError as error:
        print(f"a run refuses this study as it is: {error}")


def _block_plan(block) -> str:
    """'block tuned: 2 tasks x 1 size x 2 methods x 3 grid points (learning_rate: 3) x 5 seeds
    = 60 cells' (cells it names; another block may name some of them too)."""

    def count(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    parts = [
        count(len(block.tasks), "task"),
        count(len(block.sizes), "size"),
        count(len(block.methods), "method"),
    ]
    if block.grid:
        axes = ", ".join(f"{name}: {len(values)}" for name, values in sorted(block.grid.items()))
        parts.append(f"{count(len(block.points), 'grid point')} ({axes})")
    parts.append(count(len(block.seeds), "seed"))
    total = len(block.tasks) * len(block.sizes) * len(block.methods) * len(block.points)
    return f"block {block.name}: {' x '.join(parts)} = {total * len(block.seeds)} cells"


def _run_cells(args: argparse.Namespace, study, out: Path, ray_options, shard, blocks) -> None:
    """Train the unfinished cells with the chosen backend; one line on stderr when done."""
    from isobn.study.markdown import relative_command
    from isobn.study.runner import run_jobs

    command = relative_command(["isobn", *sys.argv[1:]], Path.cwd())
    keep, max_cells = args.keep_checkpoints, args.max_cells
    if ray_options is not None:
        from isobn.study.ray_backend import run_on_ray

        session = run_on_ray(study, out, ray_options, shard, keep, max_cells, command, blocks)
    else:
        session = run_jobs(
            study, out, args.jobs, shard, keep, max_cells, args.threads, command, blocks
        )
    print(
        f"{session['cells_finished']} cells finished in {session['wall_seconds']:.0f} s",
        file=sys.stderr,
    )


_RAY_ONLY = ("address", "connect_timeout", "cpus_per_cell", "gpus_per_cell", "max_retries")


def _ray_options(args: argparse.Namespace):
    """RayOptions for --backend ray (None for the local runner), every value checked before
    Ray starts or is reached; options of the other backend are refused rather than ignored."""
    from isobn.errors import UserError
    from isobn.study.ray_connect import cluster_address

    if args.backend == "local":  # RAY_ADDRESS, Ray's, is not read
        given = [name for name in _RAY_ONLY if getattr(args, name) is not None]
        if given:
            raise UserError(f"--{given[0].replace('_', '-')} needs --backend ray")
        return None
    for name in ("jobs", "threads"):
        if getattr(args, name) not in (None, 1):
            raise UserError(
                f"--{name} is for --backend local; with --backend ray use --cpus-per-cell"
            )
    if args.connect_timeout is not None and cluster_address(args.address)[0] is None:
        raise UserError(
            "--connect-timeout is for a cluster given with --address (or RAY_ADDRESS); a "
            "local Ray is started, not reached"
        )
    from isobn.study.ray_backend import RayOptions
    from isobn.study.ray_connect import DEFAULT_TIMEOUT

    given = {
        "cpus_per_cell": args.cpus_per_cell,
        "max_retries": args.max_retries,
        "connect_timeout": args.connect_timeout,
    }
    defaults = {"cpus_per_cell": 1, "max_retries": 3, "connect_timeout": DEFAULT_TIMEOUT}
    return RayOptions(
        address=args.address,
        gpus_per_cell=args.gpus_per_cell,
        **{name: defaults[name] if value is None else value for name, value in given.items()},
    )
