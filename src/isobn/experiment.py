"""A grid of tasks x norms x seeds: one run directory each, resumable, shardable."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path

from isobn.errors import UserError
from isobn.train import TrainConfig

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


def parse_seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in parse_list(text, "seeds")]
    except ValueError:
        raise UserError(f"--seeds must be integers separated by commas, got {text!r}") from None


def run_directory(out: Path, task: str, norm: str, seed: int) -> Path:
    return out / task / norm / f"seed{seed}"


def grid(
    base: TrainConfig, tasks: list[str], norms: list[str], seeds: list[int]
) -> list[TrainConfig]:
    """One TrainConfig per (task, norm, seed), in that nesting order."""
    out = Path(base.out)
    return [
        replace(
            base,
            task=task,
            norm=norm,
            seed=seed,
            out=str(run_directory(out, task, norm, seed)),
            resume=True,
        )
        for task in tasks
        for norm in norms
        for seed in seeds
    ]


def run_experiment(
    base: TrainConfig,
    tasks: list[str],
    norms: list[str],
    seeds: list[int],
    shard: tuple[int, int] = (1, 1),
) -> dict:
    """Run this shard's share of the grid, skipping finished runs (metrics.json present) and
    resuming interrupted ones; then write results.{json,csv,md} over every finished run in
    `base.out` (other shards' included). Returns the aggregated results."""
    from isobn.report import write_results
    from isobn.train import train

    configs = grid(base, tasks, norms, seeds)
    for cfg in configs:
        cfg.validate()  # every run's settings before the first hour of compute
    k, n = shard
    mine = [cfg for i, cfg in enumerate(configs) if i % n == k - 1]
    for number, cfg in enumerate(mine, 1):
        label = f"[{number}/{len(mine)}] {cfg.task} norm={cfg.norm} seed={cfg.seed}"
        if (Path(cfg.out) / "metrics.json").exists():
            logger.info("%s: finished already, skipped", label)
            continue
        logger.info("%s -> %s", label, cfg.out)
        train(cfg)
    return write_results(Path(base.out))
