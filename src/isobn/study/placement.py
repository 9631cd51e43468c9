"""Where a study's jobs run and with how many CPU threads: never more threads than cores.

A study with `--jobs N` runs N cells at once. Each job gets `cores // jobs` torch threads
(at least 1), and on a GPU machine the jobs share the GPUs round-robin: `--jobs 4` with one
GPU places all four on cuda:0 (small cells use a fraction of a large GPU).

Separate commands on one host (`--shard 1/12` ... `--shard 12/12`, two studies, or experiments) do
not know each other's `--jobs`, so every command registers its jobs in a host-wide folder
([`isobn.training.host_jobs`][isobn.training.host_jobs]) and each job divides the cores by the live
jobs before each cell. Twelve shards on a 16-core host so run with 1 thread each, not 16 (192
threads on 16 cores left a GPU idle).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

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
