"""The CPU threads of the training jobs on one host: never more threads than cores by default.

Commands on one host do not know each other (`isobn study --shard 1/12` ... `12/12`, two
studies, `isobn experiment --shard K/N` started by hand), so each registers its jobs in a
host-wide folder (`host_jobs_dir()`, one flock-held file per job; a killed process's locks are
released by the OS), and each job takes `cores // live jobs` torch threads (at least 1) before
each run or cell.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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
    """The host-wide folder of live jobs, of studies and experiments alike (one per user: locks
    are per user anyway; its name is the one earlier versions used for study jobs)."""
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
    """The jobs registered on this host now (a stale entry, whose process died, is removed)."""
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
    """The threads for the next cell or run: the plan's fixed number, else this host's share."""
    if placement_threads is not None:
        return placement_threads
    return share_of_cores(cores or usable_cores(), live_jobs())
