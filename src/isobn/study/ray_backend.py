"""`isobn study --backend ray`: every unfinished cell a Ray task, on a local Ray or a cluster.

Each task runs the local runner's cell function (runner.try_cell: the per-cell lock, the same
record, the same atomic write), so Ray and local runners can share one study directory and
never run a cell twice. The driver keeps the in-flight cells in memory (no file locks to
schedule) and shows the study's progress. A task whose worker process or node dies is retried
up to `max_retries` times and resumes from the cell's last checkpoint; a task that fails for a
user error (bad data, a directory the worker cannot see) returns its one-line message, is not
retried, and stops the study with that line.

The study directory must be on storage that every node sees (NFS, a shared volume): the driver
writes a token file into it and every task checks it before training. Tokenised data are
reused by the cells a worker process runs (runner.cell_data); GPU cells run in a fresh worker
each (Ray's default for GPU tasks, which frees the GPU's memory), so they tokenise anew.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from isobn.errors import UserError
from isobn.study.ray_connect import (
    DEFAULT_TIMEOUT,
    check_address,
    check_client,
    check_timeout,
    cluster_address,
    connect_to_cluster,
)
from isobn.study.runner import (
    SESSION_VARIABLE,
    cell_path,
    check_study_directory,
    run_session,
    shard_cells,
    start_study,
    try_cell,
)
from isobn.study.spec import Study
from isobn.training.disk_full import disk_full_problem

logger = logging.getLogger(__name__)

TOKENS = "ray-tokens"  # DIR/ray-tokens/TOKEN exists while the Ray driver of TOKEN runs
RAY_MISSING = "--backend ray needs Ray: pip install 'isobn[ray]'"
MAX_COUNT = 1024  # of CPUs, GPUs or retries per cell: more is a typo (Ray's are C integers)
MIN_GPU_FRACTION = 0.0001  # Ray's resource precision: a smaller request is a ValueError


@dataclass(frozen=True)
class RayOptions:
    """How cells run on Ray. address None: the cluster RAY_ADDRESS names when it is set (as
    for ray.init()), else a new local Ray sized to this machine; "auto", "HOST:6379" or
    "ray://HOST:10001": an existing cluster, reached within `connect_timeout` seconds.
    gpus_per_cell None: 1 on a cluster with GPUs, else 0; a fraction (0.25) packs several
    cells on one GPU. Checked when made: a bad value is a one-line UserError before
    Ray starts."""

    address: str | None = None
    cpus_per_cell: int = 1
    gpus_per_cell: float | None = None
    max_retries: int = 3
    connect_timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        check_address(self.address)
        check_timeout(self.connect_timeout)
        if not 1 <= self.cpus_per_cell <= MAX_COUNT:
            raise UserError(
                f"--cpus-per-cell must be a whole number from 1 to {MAX_COUNT}, "
                f"got {self.cpus_per_cell}"
            )
        if not 0 <= self.max_retries <= MAX_COUNT:
            raise UserError(
                f"--max-retries must be a whole number from 0 to {MAX_COUNT}, "
                f"got {self.max_retries}"
            )
        gpus = self.gpus_per_cell
        if gpus is not None and not (math.isfinite(gpus) and 0 <= gpus <= MAX_COUNT):
            raise UserError(
                f"--gpus-per-cell must be a number from 0 to {MAX_COUNT}, e.g. 0.5, 1 or 2; "
                f"got {gpus:g}"
            )
        if gpus is not None and 0 < gpus < MIN_GPU_FRACTION:
            raise UserError(
                f"--gpus-per-cell {gpus:g} is below Ray's smallest share of a GPU, "
                f"{MIN_GPU_FRACTION:g}: use 0 for none, or e.g. 0.25"
            )
        if gpus is not None and gpus > 1 and gpus % 1:
            raise UserError(
                f"--gpus-per-cell {gpus:g}: a fraction must be below 1; use e.g. 0.5, 1 or 2"
            )


def import_ray():
    """The ray module, or a one-line UserError: not installed, or an installation whose import
    fails (a dependency of another version, e.g. protobuf's `Descriptors cannot be created
    directly`)."""
    try:
        import ray
    except ImportError:
        raise UserError(RAY_MISSING) from None
    except Exception as error:
        first = (str(error).strip().splitlines() or [""])[0]
        raise UserError(
            f"--backend ray: importing Ray failed ({type(error).__name__}: {first}); "
            "reinstall it: pip install --force-reinstall 'isobn[ray]'"
        ) from None
    return ray


def _cell_task(
    study: Study,
    key: str,
    out: str,
    token: str,
    cwd: str,
    threads: int,
    session: str,
    keep_checkpoints: bool,
) -> dict:
    """One cell in a Ray worker: {"status": "ran" | "skipped" | "error", ...}. A user error is
    returned, not raised, so that Ray does not retry it."""
    from isobn.training.host_jobs import use_threads

    node = platform.node()
    directory = Path(out)
    if not (directory / TOKENS / token).is_file():
        return {
            "status": "error",
            "key": key,
            "message": f"a Ray worker on {node} cannot see the study directory {out}: put it "
            "on storage that every node mounts at the same path (NFS, a shared volume)",
        }
    if Path(cwd).is_dir():  # relative task files are read from the driver's directory
        os.chdir(cwd)
    os.environ[SESSION_VARIABLE] = session
    use_threads(threads)  # Ray sets OMP_NUM_THREADS to the task's CPUs; torch is told too
    cell = next(cell for cell in study.cells() if cell.key == key)
    started = time.perf_counter()
    try:
        record = try_cell(study, cell, directory, keep_checkpoints, bars_to_file=True)
    except UserError as error:
        return {"status": "error", "key": key, "message": str(error)}
    except Exception as error:  # a library's writer meeting a full disk: one line too
        problem = disk_full_problem(error, cell_path(directory, cell))
        if problem is None:
            raise
        return {"status": "error", "key": key, "message": str(problem)}
    if record is None:
        return {"status": "skipped", "key": key}
    return {
        "status": "ran",
        "key": key,
        "seconds": time.perf_counter() - started,
        "wall_seconds": record["wall_seconds"],
        "dev_score": record["dev_score"],
        "pid": os.getpid(),
        "node": node,
    }


def connect(ray, address: str | None, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Connect to Ray unless this process already is; True when this call started it. A
    cluster at `address` (or, without one, RAY_ADDRESS) that does not answer within
    `timeout` seconds is a one-line UserError (isobn.study.ray_connect)."""
    if ray.is_initialized():
        return False
    address, from_env = cluster_address(address)
    if address is None:
        _start_local_ray(ray)
    else:
        connect_to_cluster(ray, address, timeout, from_env)
    return True


def _start_local_ray(ray) -> None:
    """ray.init of a local Ray sized to this machine. A Ctrl-C while it starts (a few
    seconds) waits for the start, then shuts it down: interrupted half-way, ray.shutdown
    cannot reach what started, and Ray's agents stayed a minute or two (children of PID 1).
    A second Ctrl-C interrupts at once."""
    from isobn.training.host_jobs import usable_cores

    interrupted: list[int] = []

    def defer(signum, frame) -> None:
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(signum)
        logger.info("interrupted: stopping the local Ray once it has started")

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, defer) if main_thread else None
    try:
        ray.init(address="local", num_cpus=usable_cores(), include_dashboard=False)
    except BaseException:
        ray.shutdown()  # what started, as far as Ray knows it
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if interrupted:
        ray.shutdown()
        raise KeyboardInterrupt


def run_on_ray(
    study: Study,
    out: Path,
    options: RayOptions,
    shard: tuple[int, int] = (1, 1),
    keep_checkpoints: bool = False,
    max_cells: int | None = None,
    command: str = "",
    blocks: tuple[str, ...] | None = None,
) -> dict:
    """Run the study's unfinished cells (this shard's, of `blocks` only, when given; the first
    `max_cells` of them) as Ray tasks and wait for all; returns the session's end line, with
    "ran": the keys of the cells this driver's tasks ran."""
    ray = import_ray()
    check_client(options.address)
    _check_before_ray(ray, study, out, options, blocks)
    out = out.resolve()
    started_ray = connect(ray, options.address, options.connect_timeout)
    try:
        resources = ray.cluster_resources()
        gpus = options.gpus_per_cell
        if gpus is None:
            gpus = 1.0 if resources.get("GPU", 0) else 0.0
        _check_resources(resources, options.cpus_per_cell, gpus)
        check_study_directory(study, out)  # bound once the cluster answered and fits
        slots = int(resources.get("CPU", 1) // options.cpus_per_cell)
        if gpus:
            slots = min(slots, int(resources.get("GPU", 0) // gpus))
        details = {
            "jobs": max(1, slots),
            "backend": "ray",
            "address": cluster_address(options.address)[0] or "local",
            "cpus_per_cell": options.cpus_per_cell,
            "gpus_per_cell": gpus,
            "threads_per_job": options.cpus_per_cell,
        }
        machine = f"Ray cluster: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs"
        ran: list[str] = []

        def body(progress) -> None:
            ran.extend(
                _drive(
                    ray,
                    study,
                    out,
                    options,
                    gpus,
                    shard,
                    keep_checkpoints,
                    max_cells,
                    blocks,
                    progress,
                )
            )

        end = run_session(study, out, body, details, command, shard, blocks, machine)
    finally:
        if started_ray:
            ray.shutdown()
    return {**end, "ran": ran}


def _check_before_ray(ray, study: Study, out: Path, options: RayOptions, blocks) -> None:
    """What can be refused before Ray starts or is reached: a local Ray's resources, then
    what every runner checks first (runner.start_study: the task files, the study directory,
    the models and data of the cells to run); `out` is bound after Ray is reached."""
    local = cluster_address(options.address)[0] is None
    if local and not ray.is_initialized():  # the local Ray to be started
        _check_resources(_this_machine(), options.cpus_per_cell, options.gpus_per_cell or 0.0)
    start_study(study, out, blocks)


def _this_machine() -> dict:
    """The resources of the local Ray that `connect` starts: this process's cores, the GPUs
    that CUDA shows (CUDA_VISIBLE_DEVICES), as cluster_resources() will report them."""
    import torch

    from isobn.training.host_jobs import usable_cores

    return {"CPU": usable_cores(), "GPU": torch.cuda.device_count()}


def _check_resources(resources: dict, cpus: int, gpus: float) -> None:
    """A task asking for more than the cluster has would wait forever: refuse it."""
    if cpus > resources.get("CPU", 0):
        raise UserError(
            f"--cpus-per-cell {cpus} exceeds the Ray cluster's {resources.get('CPU', 0):g} CPUs: "
            "use fewer"
        )
    if gpus > resources.get("GPU", 0):
        raise UserError(
            f"--gpus-per-cell {gpus:g} but the Ray cluster has {resources.get('GPU', 0):g} GPUs: "
            "add GPU nodes, or use --gpus-per-cell 0"
        )


def _drive(ray, study, out, options, gpus, shard, keep_checkpoints, max_cells, blocks, progress):
    """Submit a task per unfinished cell and follow them to the end; returns the keys run.
    The first user error cancels the rest and is raised (finished cells stay finished, the
    interrupted ones resume from their checkpoints next time)."""
    cells = [
        cell for cell in shard_cells(study, shard, blocks) if not cell_path(out, cell).is_file()
    ]
    cells = cells[:max_cells] if max_cells is not None else cells
    token = secrets.token_hex(16)
    token_path = out / TOKENS / token
    token_path.parent.mkdir(exist_ok=True)
    token_path.touch()
    try:
        pending = _submit(ray, study, cells, out, options, gpus, token, keep_checkpoints)
        return _follow(ray, pending, options, progress)
    finally:
        token_path.unlink(missing_ok=True)


def _submit(ray, study, cells, out, options, gpus, token, keep_checkpoints) -> dict:
    """A Ray task per cell, in order: {object ref: cell key}."""
    task = ray.remote(_cell_task).options(
        num_cpus=options.cpus_per_cell,
        num_gpus=gpus,
        max_retries=options.max_retries,
        retry_exceptions=False,  # only a dead worker or node is retried, never an error
        name="isobn-cell",
    )
    study_ref = ray.put(study)
    session = os.environ[SESSION_VARIABLE]
    return {
        task.remote(
            study_ref,
            cell.key,
            str(out),
            token,
            os.getcwd(),
            options.cpus_per_cell,
            session,
            keep_checkpoints,
        ): cell.key
        for cell in cells
    }


def _follow(ray, pending: dict, options, progress) -> list[str]:
    """Wait for the tasks `pending` one at a time, showing them in `progress`; returns the
    keys run. The first user error cancels the rest and is raised."""
    for key in list(pending.values())[: progress.slots]:
        progress.started(key)  # queued beyond the cluster's capacity: to do
    waiting = list(pending.values())[progress.slots :]
    ran: list[str] = []
    try:
        while pending:
            (done,), _ = ray.wait(list(pending), num_returns=1)
            key = pending.pop(done)
            if key in waiting:  # finished (skipped) before its turn in the view
                waiting.remove(key)
            try:
                result = ray.get(done)
            except ray.exceptions.RayTaskError:  # a bug in the cell: its traceback
                raise
            except ray.exceptions.RayError as error:  # retries spent: worker or node lost
                raise UserError(
                    f"cell {key} failed on Ray after {options.max_retries} retries "
                    f"({type(error).__name__}); rerun to resume it"
                ) from None
            if result["status"] == "error":
                raise UserError(result["message"])
            if result["status"] == "ran":
                ran.append(key)
                progress.done(key, result["wall_seconds"])
            else:
                progress.skipped(key)
            if waiting:
                progress.started(waiting.pop(0))
    except BaseException:
        for ref in pending:
            ray.cancel(ref)
        raise
    return ran
