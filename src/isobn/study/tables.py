"""Tables of a study's scores, shared by RESULTS.md's block sections (isobn.study.markdown)
and its tuned sections (isobn.study.tuned): per-seed summaries, seed-paired differences
against `none`, and the paper's average over tasks. Numbers are the main metric x 100."""

from __future__ import annotations

import numpy as np

from isobn.study import stats

UNDEFINED = "undefined"  # a NaN score: a correlation on constant targets (isobn.tasks.metrics)


def number_text(value: float | None, digits: int = 1, sign: str = "", kind: str = "f") -> str:
    """`value` formatted ``{sign}.{digits}{kind}``; "-" when there is none, "undefined" when it
    is NaN, never "nan"."""
    if value is None:
        return "-"
    return UNDEFINED if np.isnan(value) else f"{value:{sign}.{digits}{kind}}"


def sig_text(value: float | None) -> str:
    """Three significant digits: isotropy metrics span 1e-5 (a collapsed embedding) to 1."""
    return number_text(value, 3, kind="g")


def ci_text(interval: tuple[float, float] | None, digits: int = 1) -> str:
    if interval is None:
        return "-"
    if np.isnan(interval).any():
        return UNDEFINED
    return f"[{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def p_text(value: float | None) -> str:
    small = value is not None and value < 0.001  # NaN is not small: "undefined"
    return f"{value:.1e}" if small else number_text(value, 3)


def size_text(size: int | None) -> str:
    return "full" if size is None else str(size)


def scores_table(groups, methods, points: dict[tuple, dict[str, str]] | None = None) -> list[str]:
    """Per task, size and method: dev and test summaries over seeds, failed runs, best epochs;
    with `points` ({(task, size): {method: text}}), a column naming each method's tuned
    grid point."""
    point_head = ("| tuned point ", "|---") if points is not None else ("", "")
    lines = [
        "Scores (main metric x 100) over seeds. `failed`: runs whose dev score is no better "
        "than the majority class.",
        "",
        f"| task | size | method {point_head[0]}| n | dev median ± std | test median ± std "
        "| test mean [95% CI] | failed | best epoch median (range) |",
        f"|---|---|---{point_head[1]}|---|---|---|---|---|---|",
    ]
    for (task, size), by_method in sorted(groups.items(), key=group_order):
        for method in [m for m in methods if m in by_method]:
            runs = by_method[method]
            dev = stats.summary(list(stats.scores(runs, "dev").values()))
            test_scores = list(stats.scores(runs, "test").values())
            test = stats.summary(test_scores) if test_scores else None
            epochs = [r["best_epoch"] for r in runs.values()]
            fails = sum(stats.failed(r) for r in runs.values())
            point = "" if points is None else f"`{points[(task, size)][method]}` | "
            lines.append(
                f"| {task} | {size_text(size)} | `{method}` | {point}{dev['n']} | "
                f"{median_std(dev)} | "
                + (
                    f"{median_std(test)} | {value_ci(test['mean'], test['ci'])} | "
                    if test
                    else "- | - | "
                )
                + f"{fails}/{len(runs)} | {number_text(float(np.median(epochs)), 1)} "
                f"({number_text(min(epochs), 0)}-{number_text(max(epochs), 0)}) |"
            )
    return lines + [""]


def median_std(summary: dict) -> str:
    """ "MEDIAN ± STD"; the median alone when it is undefined or has no spread (one seed)."""
    median, std = summary["median"], summary["std"]
    if np.isnan(median) or std is None or np.isnan(std) or summary.get("n", 2) < 2:
        return number_text(median)
    return f"{number_text(median)} ± {number_text(std)}"


def value_ci(value: float, interval, digits: int = 1, sign: str = "") -> str:
    """ "VALUE [LOW, HIGH]"; the value alone when it is undefined (no interval beside it)."""
    text = number_text(value, digits, sign)
    return text if np.isnan(value) else f"{text} {ci_text(interval, digits)}"


def group_order(item):
    (task, size), _ = item
    return task, -1 if size is None else size


def paired_table(groups, methods) -> list[str]:
    lines = [
        "Seed-paired differences against `none` (method - none, x 100): mean [95% bootstrap CI], "
        "wins/ties/losses and the Wilcoxon signed-rank p-value.",
        "",
        "| task | size | method | n | dev diff [95% CI] | dev W/T/L | dev p | test diff [95% CI] "
        "| test W/T/L | test p |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (task, size), by_method in sorted(groups.items(), key=group_order):
        base = by_method.get(stats.BASELINE)
        if base is None:
            continue
        for method in [m for m in methods if m in by_method and m != stats.BASELINE]:
            cells = []
            for split in ("dev", "test"):
                result = stats.paired(
                    stats.scores(by_method[method], split), stats.scores(base, split)
                )
                if result is None:
                    cells.append("- | - | -")
                    continue
                undefined = result["undefined"]
                cells.append(
                    f"{value_ci(result['mean_diff'], result['ci'], 2, '+')} | "
                    f"{result['wins']}/{result['ties']}/{result['losses']}"
                    + (f" ({undefined} undefined)" if undefined else "")
                    + f" | {p_text(result['p_wilcoxon'])}"
                )
                n = result["n"]
            lines.append(
                f"| {task} | {size_text(size)} | `{method}` | {n} | " + " | ".join(cells) + " |"
            )
    return lines + [""]


def average_table(groups, methods) -> list[str]:
    """The paper's summary: per size, the average over tasks of each method's median."""
    sizes = sorted({size for _, size in groups}, key=lambda s: -1 if s is None else s)
    lines = []
    for size in sizes:
        tasks = sorted(task for task, s in groups if s == size)
        if len(tasks) < 2:
            continue
        row = []
        for method in methods:
            averages = []
            for split in ("dev", "test"):  # "-" when a task lacks the method's scores
                per_task = [stats.scores(groups[(t, size)].get(method, {}), split) for t in tasks]
                medians = [np.median(list(s.values())) for s in per_task if s]
                whole = len(medians) == len(tasks)
                averages.append(number_text(float(np.mean(medians)), 2) if whole else "-")
            row.append(f"| `{method}` | {averages[0]} | {averages[1]} |")
        lines += [
            f"Average over {', '.join(tasks)} of the per-task median (size {size_text(size)}; "
            "the paper's summary):",
            "",
            "| method | dev | test |",
            "|---|---|---|",
            *row,
            "",
        ]
    return lines
