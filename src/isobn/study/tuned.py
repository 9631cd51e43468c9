"""RESULTS.md sections of a block with a grid: each method tuned on dev, compared at its own
tuned point, its sensitivity to the grid, and its expected best dev score against budget.

A method's tuned point (for one task and size) is the grid point with the best median dev
score over seeds (isobn.study.tuning.choose_point); its test scores are reported at that point
and never choose it. The study-wide sections (isotropy, best epochs, figures) see a grid
block's cells at their tuned points only (tuned_records).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from isobn.study import stats, tuning
from isobn.study.grid import GridPoint, point_text, value_text
from isobn.study.spec import Block
from isobn.study.tables import (
    average_table,
    group_order,
    number_text,
    paired_table,
    scores_table,
    size_text,
)
from isobn.study.tuning import by_point, record_point, score_range, trial_scores


def tuned_points(block: Block, records: list[dict]) -> dict[tuple, dict[str, GridPoint]]:
    """{(task, size): {method: tuned point}} of the block's finished cells `records`; a
    method none of whose points has a defined dev median is left out."""
    return _choose_points(block, by_point(records))


def _choose_points(block: Block, grouped: dict) -> dict[tuple, dict[str, GridPoint]]:
    """tuned_points of by_point's `grouped`."""
    chosen: dict[tuple, dict[str, GridPoint]] = {}
    for key, by_method in grouped.items():
        for method, points in by_method.items():
            dev = {p: list(stats.scores(runs, "dev").values()) for p, runs in points.items()}
            point = tuning.choose_point(dev, block.points)
            if point is not None:
                chosen.setdefault(key, {})[method] = point
    return chosen


def tuned_groups(block: Block, records: list[dict]) -> dict[tuple, dict[str, dict[int, dict]]]:
    """stats.group's {(task, size): {method: {seed: record}}} of each method's tuned point."""
    return _at_points(by_point(records), tuned_points(block, records))


def _at_points(grouped: dict, chosen: dict) -> dict[tuple, dict[str, dict[int, dict]]]:
    """The records of by_point's `grouped` at the `chosen` point of each task, size, method."""
    return {
        key: {method: grouped[key][method][point] for method, point in picks.items()}
        for key, picks in chosen.items()
    }


def tuned_records(blocks: list[Block], records: list[dict]) -> list[dict]:
    """The records the study-wide sections table: every cell of a block without grid, and a
    grid block's cells at each method's tuned point; a cell both untuned and tuned (same
    task, size, method and seed) counts once, untuned first. A study without grid: `records`."""
    if not any(block.grid for block in blocks):
        return records
    kept = [r for r in records if not r.get("grid")]
    for block in blocks:
        if block.grid:
            mine = block_records(block, records)
            for by_method in tuned_groups(block, mine).values():
                kept += [r for runs in by_method.values() for r in runs.values()]
    seen, unique = set(), []
    for record in kept:
        key = (record["task"], record["size"], record["method"], record["seed"])
        if key not in seen:
            seen.add(key)
            unique.append(record)
    return unique


def block_records(block: Block, records: list[dict]) -> list[dict]:
    """The finished cells a block names (its tasks, sizes, methods, seeds and grid points)."""
    points = set(block.points)
    return [
        r
        for r in records
        if r["task"] in block.tasks
        and r["size"] in block.sizes
        and r["method"] in block.methods
        and r["seed"] in block.seeds
        and record_point(r) in points
    ]


def grid_block_section(
    block: Block, records: list[dict], figures: Path
) -> tuple[list[str], list[Path]]:
    """The sections of a grid block from its finished cells `records`, and the figures drawn
    into `figures` (the study's figures/ folder), linked from the text."""
    from isobn.analysis.figures import can_draw
    from isobn.study.tuning_figures import budget_figure, sensitivity_figure

    axes = "; ".join(
        f"`{name}` in {{{', '.join(value_text(v) for v in values)}}}"
        for name, values in sorted(block.grid.items())
    )
    lines = [
        f"## Block `{block.name}`",
        "",
        f"Grid: {axes}: {len(block.points)} point(s), each run by every method with seeds "
        f"{', '.join(map(str, block.seeds))}. A method's **tuned point** is its point with "
        "the best median dev score over seeds (a tie: the first in the grid's order); test "
        "scores are reported at that point and never choose it.",
        "",
    ]
    if not records:
        return lines + ["No finished cells yet.", ""], []
    grouped = by_point(records)  # grouped once for every table and figure below
    chosen = _choose_points(block, grouped)
    groups = _at_points(grouped, chosen)
    texts = {key: {m: point_text(p) for m, p in picks.items()} for key, picks in chosen.items()}
    lines += [
        "### Tuned comparison",
        "",
        "Each method at its own tuned point against `none` at "
        "its own tuned point, paired by seed (the headline of a tuned study).",
        "",
    ]
    lines += paired_table(groups, block.methods)
    lines += average_table(groups, block.methods)
    lines += ["### Tuned", ""]
    lines += scores_table(groups, block.methods, texts)
    lines += sensitivity_lines(block, records, chosen)
    drawn = can_draw()  # without matplotlib: the tables only (one warning)
    paths = [sensitivity_figure(block, records, chosen, figures)] if drawn else []
    lines += [f"![sensitivity](figures/{p.name})" for p in paths] + [""]
    lines += budget_lines(block, records)
    for key in sorted(grouped, key=lambda k: group_order((k, None))) if drawn else []:
        paths.append(budget_figure(block, key, grouped[key], figures))
        lines += [f"![expected best dev, {key[0]} n={size_text(key[1])}](figures/{paths[-1].name})"]
    return lines + [""], paths


def sensitivity_lines(block: Block, records: list[dict], chosen) -> list[str]:
    """The dev median over seeds at every grid point, failed runs counted per point."""
    points = block.points
    lines = [
        "### Sensitivity",
        "",
        "Dev median over seeds at every grid point; `(k failed)`: runs no better than the "
        "majority class at that point; **bold**: the tuned point. A method that works over more "
        "of the grid is less sensitive to its setting.",
        "",
        "| task | size | method | " + " | ".join(f"`{point_text(p)}`" for p in points) + " |",
        "|---|---|---|" + "---|" * len(points),
    ]
    for (task, size), by_method in sorted(by_point(records).items(), key=group_order):
        for method in [m for m in block.methods if m in by_method]:
            cells = []
            for point in points:
                runs = by_method[method].get(point, {})
                dev = list(stats.scores(runs, "dev").values())
                text = number_text(float(np.median(dev))) if dev else "-"
                fails = sum(stats.failed(r) for r in runs.values())
                text += f" ({fails} failed)" if fails else ""
                bold = chosen.get((task, size), {}).get(method) == point
                cells.append(f"**{text}**" if bold else text)
            lines.append(f"| {task} | {size_text(size)} | `{method}` | " + " | ".join(cells) + " |")
    return lines + [""]


def budget_lines(block: Block, records: list[dict]) -> list[str]:
    """Expected best dev score (and the expected test score of the dev-chosen trial) against
    the number of trials drawn from the method's grid points x seeds."""
    lines = [
        "### Expected best dev score against budget",
        "",
        "A method's trials are its N cells (grid points x seeds) for the task and size. "
        "`E[best dev]` at budget n is the expected maximum dev score of n trials drawn at "
        "random with replacement from them (Dodge et al., EMNLP 2019): "
        "`sum_i v_(i) [(i/N)^n - ((i-1)/N)^n]` with `v_(1) <= ... <= v_(N)` the sorted dev scores. "
        "`E[test]` is the expected test score of the trial with the best dev score among the n "
        "(Bajgar et al., ICML 2018, Boo_n): the same weights on the test scores ordered by "
        "dev, trials tied on dev sharing their weight. The band is opda's simultaneous "
        f"{tuning.BAND_LEVEL:.0%} confidence band of E[best dev] (Lourie et al., NAACL 2024), "
        f"drawn with at least {tuning.BAND_MIN_TRIALS} trials; dev scores on a finite dev set "
        "are discrete, so it is approximate. With few trials its upper end nears the score's "
        "ceiling: they cannot rule out a rare, much better trial. The figures' axes follow the "
        "curves, so a wide band runs off them.",
        "",
        "| task | size | method | N | E[best dev] / E[test] at n = ... | band at n = N |",
        "|---|---|---|---|---|---|",
    ]
    for (task, size), by_method in sorted(by_point(records).items(), key=group_order):
        for method in [m for m in block.methods if m in by_method]:
            trials = trial_scores(by_method[method])
            dev, test = trials["dev"], trials["test"]
            if not dev:
                continue
            curve = []
            for n in tuning.budgets(len(dev)):
                best = number_text(tuning.expected_best(dev, n))
                chosen = number_text(tuning.expected_test_at_best(dev, test, n)) if test else "-"
                curve.append(f"{n}: {best} / {chosen}")
            band = _band_text(dev, score_range(by_method[method]))
            lines.append(
                f"| {task} | {size_text(size)} | `{method}` | {len(dev)} | "
                + "; ".join(curve)
                + f" | {band} |"
            )
    return lines + [""]


def _band_text(dev: list[float], bounds: tuple[float, float]) -> str:
    band = tuning.expected_best_band(dev, [len(dev)], *bounds)
    if band is None:
        return "-"
    return f"[{number_text(float(band[0][0]))}, {number_text(float(band[1][0]))}]"


__all__ = [
    "block_records",
    "grid_block_section",
    "tuned_groups",
    "tuned_points",
    "tuned_records",
]
