"""Where a study's jobs run and with how many CPU threads: never more threads than cores.

A study with `--jobs N` runs N cells at once. Each job gets `cores // jobs` torch threads
(at least 1), and on a GPU machine the jobs share the GPUs round-robin: `--jobs 4` with one
GPU places all four on cuda:0 (small cells use a fraction of a large GPU).

Separate commands on one host (`--shard 1/12` ... `--shard 12/12`, or two studies) do not know
each other's `--jobs`, so every command registers its jobs in a host-wide folder
(`host_jobs_dir()`, one flock-held file per job; a killed process's locks are released by the
OS) and each job divides the cores by the live jobs before each cell. Twelve shards on a
16-core host so run with 1 thread each, not 16 (192 threads on 16 cores left a GPU idle).
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from isobn.errors import UserError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    """The plan of one `isobn study` command: torch threads per job (None: divide the cores
    by the host's live jobs before each cell) and the CUDA device of each job (None: CPU)."""

    threads: int | None
    devices: tuple[int | None, ...]

    @property
    def jobs(self) -> int:
        return len(self.devices)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def place_jobs(jobs: int, cores: int, gpus: int, threads: int | None = None) -> Placement:
    """Plan `jobs` processes on `cores` CPU cores and `gpus` GPUs.

    Default threads: `cores // live jobs` (at least 1), so jobs x threads <= cores. More jobs
    than cores is refused (each job needs a core). An explicit `threads` is kept, with a
    warning when jobs x threads exceeds the cores."""
    if threads is None and jobs > cores:
        raise UserError(
            f"--jobs {jobs} exceeds the {cores} CPU cores: use --jobs {cores} or fewer "
            "(each job needs a core, even with a GPU)"
        )
    if threads is not None and jobs * threads > cores:
        logger.warning(
            "--jobs %d x --threads %d = %d threads on %d cores: the jobs slow each other down",
            jobs,
            threads,
            jobs * threads,
            cores,
        )
    devices = tuple(i % gpus for i in range(jobs)) if gpus else (None,) * jobs
    return Placement(threads, devices)


def share_of_cores(cores: int, live_jobs: int) -> int:
    """Threads of one job when `live_jobs` jobs share `cores`: cores // jobs, at least 1."""
    return max(1, cores // max(1, live_jobs))


def use_threads(threads: int) -> None:
    """Set torch's intra-op threads and the OpenMP/MKL variables that child processes read."""
    import torch

    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def host_jobs_dir() -> Path:
    """The host-wide folder of live study jobs (one per user: locks are per user anyway)."""
    return Path(tempfile.gettempdir()) / f"isobn-study-jobs-{os.getuid()}"


@contextmanager
def registered_jobs(count: int) -> Iterator[None]:
    """Hold `count` job entries in host_jobs_dir() while the block runs."""
    folder = host_jobs_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        for _ in range(count):
            name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
            handle = stack.enter_context(open(folder / f"{name}.new", "w"))
            fcntl.flock(handle, fcntl.LOCK_EX)  # locked before live_jobs() can see it
            path = (folder / f"{name}.new").rename(folder / f"{name}.job")
            stack.callback(path.unlink, missing_ok=True)  # runs before the handle closes
        yield


def live_jobs() -> int:
    """The study jobs registered on this host now (a stale entry, whose process died, is
    removed)."""
    live = 0
    for path in host_jobs_dir().glob("*.job"):
        try:
            with open(path) as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    live += 1
                    continue
                path.unlink(missing_ok=True)  # nobody holds it: its process is gone
        except FileNotFoundError:  # removed meanwhile by its owner or another reader
            continue
    return live


def cell_threads(placement_threads: int | None, cores: int | None = None) -> int:
    """The threads for the next cell: the plan's fixed number, else this host's share."""
    if placement_threads is not None:
        return placement_threads
    return share_of_cores(cores or usable_cores(), live_jobs())
