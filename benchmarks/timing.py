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


def calibrated_arm(fn: Callable[[], object], device: torch.device, target_s: float):
    """An arm for interleaved(): seconds per call of `fn`, over as many back-to-back calls as
    take about `target_s` (calibrated once, here)."""
    iters = calibrate(fn, device, target_s)
    return lambda: time_call(fn, device, iters)


def warmed_arm(fn: Callable[[], object], device: torch.device) -> Callable[[], float]:
    """An arm for interleaved(): seconds of one call of `fn` (a training step), after one
    warm-up call here (allocator, kernel choice)."""
    fn()
    return lambda: time_call(fn, device)


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


def share_of_step(times: list[float], step: list[float]) -> tuple[dict, list[str]]:
    """A module's seconds against a training step's, sampled in the same rounds: the figures
    (step_ms, overhead_pct = module / step in %, with its per-round range) and their table
    cells (step ms, module/step)."""
    overhead = tuple(100 * v for v in ratio(times, step))
    figures = {
        "step_ms": median(step) * 1e3,
        "overhead_pct": overhead[0],
        "overhead_pct_rounds": overhead[1:],
    }
    return figures, [f"{figures['step_ms']:.1f}", format_ratio(overhead, "%")]


def format_ratio(value: tuple[float, float, float], suffix: str = "x") -> str:
    mid, low, high = value
    return f"{mid:.3f}{suffix} (rounds {low:.3f}-{high:.3f})"
