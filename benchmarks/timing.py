"""Timing: interleaved rounds, medians and ratios.

Protocol: every benchmark times its arms in rounds, one sample of each arm per round (A, B, C,
then C, A, B backwards, ...: see interleaved()), and reports the median of the samples of each
arm. Ratios are ratios of medians; the spread printed next to a ratio is the range of its
per-round (paired) ratios, which shows how much the shared machine's load moved the figure.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, iters: int = 1) -> float:
    """Seconds per call of `fn`, averaged over `iters` back-to-back calls."""
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - start) / iters


def calibrate(fn: Callable[[], object], device: torch.device, target_s: float) -> int:
    """Iterations of `fn` that take about `target_s` (at least 1): for microsecond layers."""
    fn()  # warm-up: allocation, kernel selection
    once = time_call(fn, device, 3)
    return max(1, min(100_000, round(target_s / max(once, 1e-7))))


def interleaved(arms: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """One sample of every arm per round, `repeats` rounds. The order rotates by one arm each
    round and runs backwards every other round, so that no arm always goes first and none
    always follows the same arm (what an arm leaves behind, such as freed memory that the next
    one must fault in again, then does not bias one arm).

    Each arm returns its own measurement (seconds, or samples/s): the caller knows which.
    """
    names = list(arms)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        order = names[shift:] + names[:shift]
        for name in reversed(order) if r % 2 else order:
            samples[name].append(float(arms[name]()))
    return samples


def median(values: list[float]) -> float:
    return statistics.median(values)


def ratio(numerator: list[float], denominator: list[float]) -> tuple[float, float, float]:
    """(median(num) / median(den), min and max of the per-round ratios)."""
    paired = [a / b for a, b in zip(numerator, denominator)]
    return median(numerator) / median(denominator), min(paired), max(paired)


def paired_median(numerator: list[float], denominator: list[float]) -> float:
    """Median of the per-round ratios: steadier than the ratio of medians when the machine's
    load changes between rounds but not within one."""
    return median([a / b for a, b in zip(numerator, denominator)])


def format_ratio(value: tuple[float, float, float], suffix: str = "x") -> str:
    mid, low, high = value
    return f"{mid:.3f}{suffix} (rounds {low:.3f}-{high:.3f})"
