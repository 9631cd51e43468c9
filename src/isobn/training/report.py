"""Tables over finished runs: median +- std over seeds (as the paper reports), mean, best,
an average over tasks, and seed-paired differences against `none` with Wilcoxon p-values.

Scores are the task's main dev metric x 100 (GLUE convention). `std` is the sample standard
deviation over seeds (ddof = 1; 0 for a single seed).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from isobn.errors import UserError
from isobn.training.runs import finished_run_dirs, read_metrics
from isobn.training.safe_files import (
    all_or_none,
    replaced_atomically,
    write_atomically,
    write_json_atomically,
)

BASELINE = "none"


def collect_runs(directory: Path) -> list[dict]:
    """metrics.json of every finished run below `directory`, with its run directory."""
    runs = []
    for run_dir in finished_run_dirs(directory):
        metrics = read_metrics(run_dir)
        metrics["run_dir"] = str(run_dir.relative_to(directory))
        runs.append(metrics)
    return runs


def main_score(run: dict, split: str = "dev") -> float | None:
    values = run.get(split) or {}
    value = values.get(run["main_metric"])
    return None if value is None else 100.0 * float(value)


def wilcoxon_p(differences: list[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value (scipy); 1.0 when every difference is 0,
    None for fewer than 2 pairs, NaN when a difference is NaN (an undefined score)."""
    from scipy.stats import wilcoxon

    if len(differences) < 2:
        return None
    if np.isnan(differences).any():
        return float("nan")
    if all(d == 0 for d in differences):
        return 1.0
    return float(wilcoxon(differences).pvalue)


def summarize(values: list[float]) -> dict:
    array = np.asarray(values, dtype=float)
    return {
        "n": len(values),
        "median": float(np.median(array)),
        "std": float(array.std(ddof=1)) if len(values) > 1 else 0.0,
        "mean": float(array.mean()),
        "best": float(array.max()),
    }


def aggregate(runs: list[dict], split: str = "dev") -> dict:
    """Per task and method: scores by seed and their summary; per method: the average over
    tasks of the medians; per method != none: seed-paired differences against none."""
    from isobn.training.config import method_of

    scores: dict[str, dict[str, dict[int, float]]] = {}
    main_metrics: dict[str, str] = {}
    seen: dict[tuple, dict] = {}
    for run in runs:
        key = (run["task"], method_of(run), run["seed"])
        if key in seen:  # a cell holds one run per seed: never drop one silently
            raise UserError(
                f"two runs of task {key[0]}, method {key[1]}, seed {key[2]}: "
                f"{seen[key].get('run_dir', '?')} and {run.get('run_dir', '?')}; "
                "keep one of them (or name the data of each with --name)"
            )
        seen[key] = run
        score = main_score(run, split)
        if score is None:
            continue
        scores.setdefault(run["task"], {}).setdefault(method_of(run), {})[run["seed"]] = score
        main_metrics[run["task"]] = run["main_metric"]
    tasks = sorted(scores)
    methods = sorted({m for t in scores.values() for m in t}, key=lambda m: (m != BASELINE, m))
    cells = {
        task: {
            method: {**summarize(list(by_seed.values())), "seeds": by_seed}
            for method, by_seed in scores[task].items()
        }
        for task in tasks
    }
    average = {}
    for method in methods:
        medians = [cells[t][method]["median"] for t in tasks if method in cells[t]]
        if len(medians) == len(tasks):
            average[method] = float(np.mean(medians))
    paired = {}
    for method in methods:
        if method != BASELINE:
            comparison = _paired_vs_baseline(scores, tasks, method)
            if comparison:
                paired[method] = comparison
    return {
        "split": split,
        "tasks": tasks,
        "methods": methods,
        "main_metrics": main_metrics,
        "cells": cells,
        "average": average,
        "paired_vs_none": paired,
    }


def _paired_vs_baseline(scores: dict, tasks: list[str], method: str) -> dict | None:
    """Seed-paired differences of `method` against none per task and pooled; None without
    a seed that both ran."""
    per_task, pooled = {}, []
    for task in tasks:
        ours, base = scores[task].get(method, {}), scores[task].get(BASELINE, {})
        seeds = sorted(set(ours) & set(base))
        if not seeds:
            continue
        diffs = [ours[s] - base[s] for s in seeds]
        pooled += diffs
        per_task[task] = {
            "n": len(seeds),
            "mean_diff": float(np.mean(diffs)),
            "median_diff": float(np.median(diffs)),
            "wins": sum(d > 0 for d in diffs),
            "p_wilcoxon": wilcoxon_p(diffs),
        }
    if not per_task:
        return None
    return {
        "tasks": per_task,
        "all": {
            "n": len(pooled),
            "mean_diff": float(np.mean(pooled)),
            "wins": sum(d > 0 for d in pooled),
            "p_wilcoxon": wilcoxon_p(pooled),
        },
    }


def _fmt(value: float | None, digits: int = 2, sign: str = "") -> str:
    """A number for a table: "n/a" when there is none, "undefined" when it is NaN (a
    correlation on constant dev targets, see isobn.tasks.metrics), never "nan"."""
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isnan(value):
        return "undefined"
    return f"{value:{sign}.{digits}f}"


def _median_std(median: float, std: float | None, n: int) -> str:
    """ "MEDIAN +- STD" for a table; the median alone when it is undefined (NaN: the spread
    of an undefined score means nothing) or when there is no spread to give (one seed)."""
    if math.isnan(median) or std is None or math.isnan(std) or n < 2:
        return _fmt(median)
    return f"{_fmt(median)} +- {_fmt(std)}"


def markdown(results: dict) -> str:
    """results.md: the median +- std table, then mean/best, then the paired comparison."""
    tasks, methods, cells = results["tasks"], results["methods"], results["cells"]
    metric_names = ", ".join(f"{t}: {results['main_metrics'][t]}" for t in tasks)
    lines = [
        f"# Results ({results['split']}, main metric x 100; {metric_names})",
        "",
        "Median +- std over seeds (n = number of seeds).",
        "",
        "| method | " + " | ".join(tasks) + " | avg |",
        "|---|" + "---|" * (len(tasks) + 1),
    ]
    for method in methods:
        row = []
        for task in tasks:
            cell = cells[task].get(method)
            row.append(
                f"{_median_std(cell['median'], cell['std'], cell['n'])} (n={cell['n']})"
                if cell
                else "-"
            )
        lines.append(
            f"| {method} | " + " | ".join(row) + f" | {_fmt(results['average'].get(method))} |"
        )
    lines += ["", "Mean / best over seeds.", ""]
    lines += ["| method | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for method in methods:
        row = [
            f"{_fmt(cells[t][method]['mean'])} / {_fmt(cells[t][method]['best'])}"
            if method in cells[t]
            else "-"
            for t in tasks
        ]
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    if results["paired_vs_none"]:
        lines += [
            "",
            "Seed-paired difference against `none` (mean diff, wins/n, Wilcoxon signed-rank p; "
            "with fewer than 6 pairs p cannot fall below 0.05).",
            "",
            "| method | " + " | ".join(tasks) + " | all |",
            "|---|" + "---|" * (len(tasks) + 1),
        ]
        for method, paired in results["paired_vs_none"].items():
            row = []
            for task in [*tasks, None]:
                entry = paired["all"] if task is None else paired["tasks"].get(task)
                row.append(
                    f"{_fmt(entry['mean_diff'], sign='+')} ({entry['wins']}/{entry['n']}, "
                    f"p={_fmt(entry['p_wilcoxon'], 3)})"
                    if entry
                    else "-"
                )
            lines.append(f"| {method} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_results(directory: Path) -> dict:
    """results.json, results.csv (one row per task x method) and results.md in `directory`,
    all or none of them replaced (a full disk leaves the earlier ones whole)."""
    directory = Path(directory)
    runs = collect_runs(directory)
    results = aggregate(runs, "dev")
    if any(run.get("test") for run in runs):
        results["test"] = aggregate(runs, "test")
    with all_or_none():
        _write_tables(directory, results)
    return results


def _write_tables(directory: Path, results: dict) -> None:
    write_json_atomically(directory / "results.json", results)
    with (
        replaced_atomically(directory / "results.csv") as tmp,
        open(tmp, "w", newline="") as handle,
    ):
        writer = csv.writer(handle)
        writer.writerow(
            [
                "split",
                "task",
                "method",
                "main_metric",
                "n",
                "median",
                "std",
                "mean",
                "best",
                "seeds",
            ]
        )
        for block in [results, results.get("test")]:
            if not block:
                continue
            for task in block["tasks"]:
                for method, cell in block["cells"][task].items():
                    seeds = ";".join(f"{s}:{v:.4f}" for s, v in sorted(cell["seeds"].items()))
                    writer.writerow(
                        [
                            block["split"],
                            task,
                            method,
                            block["main_metrics"][task],
                            cell["n"],
                            f"{cell['median']:.4f}",
                            f"{cell['std']:.4f}",
                            f"{cell['mean']:.4f}",
                            f"{cell['best']:.4f}",
                            seeds,
                        ]
                    )
    text = markdown(results)
    if results.get("test"):
        text += "\n" + markdown(results["test"])
    write_atomically(directory / "results.md", text)
