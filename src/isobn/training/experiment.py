"""A grid of tasks x methods x seeds: one run directory each, resumable, shardable."""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import replace
from pathlib import Path

from isobn.errors import UserError
from isobn.training.config import TrainConfig

logger = logging.getLogger(__name__)


def parse_shard(text: str | None) -> tuple[int, int]:
    """'K/N' -> (K, N) with 1 <= K <= N; None -> (1, 1)."""
    if text is None:
        return 1, 1
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise UserError(f"malformed --shard {text!r}: write K/N, e.g. --shard 1/4")
    k, n = int(match[1]), int(match[2])
    if not 1 <= k <= n:
        raise UserError(f"--shard {text}: K must be between 1 and N, e.g. --shard 1/{max(n, 1)}")
    return k, n


def parse_list(text: str, what: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise UserError(f"--{what} is empty: give a comma-separated list")
    if len(set(items)) != len(items):
        raise UserError(f"--{what} lists an item twice: {text}")
    return items


def parse_tasks(text: str) -> list[str]:
    """--tasks: registered task names (aliases and case resolved), each once."""
    from isobn.tasks import task_key

    tasks = [task_key(name) for name in parse_list(text, "tasks")]
    if len(set(tasks)) != len(tasks):
        raise UserError(f"--tasks names a task twice: {text} is {', '.join(tasks)}")
    return tasks


def parse_seeds(text: str) -> list[int]:
    """--seeds: integers, each once as a number (`1,01,+1` names seed 1 three times)."""
    items = parse_list(text, "seeds")
    try:
        seeds = [int(s) for s in items]
    except ValueError:
        raise UserError(f"--seeds must be integers separated by commas, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        twice = next(s for s in seeds if seeds.count(s) > 1)
        spellings = ", ".join(i for i, s in zip(items, seeds, strict=True) if s == twice)
        raise UserError(f"--seeds names seed {twice} twice ({spellings}); give each seed once")
    return seeds


def run_directory(out: Path, data: str, method: str, seed: int) -> Path:
    """OUT/DATA/METHOD/seedS: DATA is the task, or the name of the files (TrainConfig.data_name)."""
    return out / data / method_directory(method) / f"seed{seed}"


def method_directory(method: str) -> str:
    """A file-name-safe name of a canonical method: the spec with every character but letters,
    digits and _ . = + - replaced by _ (isobn:beta=0.25 -> isobn_beta=0.25)."""
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", method)


def grid(
    base: TrainConfig, tasks: list[str | None], methods: list[str], seeds: list[int]
) -> list[TrainConfig]:
    """One TrainConfig per (task, method, seed), in that nesting order; task None: the
    files of `base`. Each run's directory is named by the data it trains on."""
    out = Path(base.out)
    configs = []
    for task in tasks:
        data = replace(base, task=task) if task is not None else base
        for method in methods:
            for seed in seeds:
                where = run_directory(out, data.data_name, method, seed)
                configs.append(replace(data, method=method, seed=seed, out=str(where), resume=True))
    return configs


def run_experiment(
    base: TrainConfig,
    tasks: list[str | None],
    methods: list[str],
    seeds: list[int],
    shard: tuple[int, int] = (1, 1),
    keep_best: bool = False,
) -> dict:
    """Run this shard's share of the grid, skipping finished runs (metrics.json present) and
    resuming interrupted ones; then write results.{json,csv,md} over every finished run in
    `base.out` (other shards' included). Returns the aggregated results.

    A finished run keeps what the tables need (config.json, log.jsonl, metrics.json), and
    best/ when `keep_best`, last/ when `base.keep_last`. Each run takes this host's share of
    the CPU cores as torch threads (cores // the jobs of experiments and studies running here:
    shards started by hand on one machine never oversubscribe it), unless OMP_NUM_THREADS was
    set."""
    from isobn.tasks.checks import warnings_once
    from isobn.training.checkpoint import check_writable_directory, ensure_writable_directory
    from isobn.training.host_jobs import cell_threads, registered_jobs, use_threads
    from isobn.training.report import write_results
    from isobn.training.run_dir import finished_result
    from isobn.training.safe_files import check_folder
    from isobn.training.train import train

    chosen_threads = os.environ.get("OMP_NUM_THREADS")  # the user's (or torchrun's) is kept
    configs = grid(base, tasks, methods, seeds)
    for cfg in configs:
        cfg.validate()  # every run's settings before the first hour of compute
    k, n = shard
    mine = [cfg for i, cfg in enumerate(configs) if i % n == k - 1]
    # a finished run is reused only when it ran these settings (else a one-line error)
    finished = {cfg.out for cfg in mine if finished_result(cfg, Path(cfg.out)) is not None}
    # the tables go there, whatever this shard runs; created once a run's inputs are good
    check_writable_directory(Path(base.out))
    if not mine:
        logger.warning("shard %d/%d has no runs: the grid has %d", k, n, len(configs))
    # each run loads its task: a warning about the data is shown at the first run only
    with registered_jobs(1), warnings_once():  # shards and studies on this host divide its cores
        for number, cfg in enumerate(mine, 1):
            label = f"[{number}/{len(mine)}] {cfg.data_name} method={cfg.method} seed={cfg.seed}"
            if cfg.out in finished:
                logger.info("%s: finished already, skipped", label)
                continue
            logger.info("%s -> %s", label, cfg.out)
            # never through a link; train creates the folder once the run's inputs are good
            check_folder(base.out, Path(cfg.out).relative_to(base.out))
            if chosen_threads is None:
                use_threads(cell_threads(None))
            train(cfg)
            if not keep_best:
                for name in ("best", "best.old", "best.tmp"):
                    shutil.rmtree(Path(cfg.out) / name, ignore_errors=True)
    ensure_writable_directory(Path(base.out))
    return write_results(Path(base.out))
