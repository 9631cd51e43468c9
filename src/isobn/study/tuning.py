"""Tuning a study's methods over a grid: a method's trials (its cells grouped by grid point),
the dev-chosen point, and the expected best score against the tuning budget.

A method's cells for one task and size form a pool of N trials (grid points x seeds), each
with a dev score v and a test score t (main metric x 100). The estimators treat a budget of n
trials as n draws with replacement from that pool, i.e. random search over the grid, as Dodge
et al. (EMNLP 2019, "Show Your Work") and Bajgar et al. (ICML 2018, "Boo_n") do:

    E[max dev of n] = sum_i v_(i) [(i/N)^n - ((i-1)/N)^n]              (v_(1) <= ... <= v_(N))
    E[test at the best dev of n] = sum_i t_[i] [(i/N)^n - ((i-1)/N)^n]  (t_[i]: the test score
                                                                         of the i-th by dev)

Trials tied on dev share their probability mass equally (the chosen one of a tie is any of
them), so a tie's test scores are averaged. (i/N)^n - ((i-1)/N)^n is the probability that the
largest of n draws is the i-th order statistic. Confidence bands come from opda (Lourie et al.,
NAACL 2024, "Show Your Work with Confidence"): simultaneous bands for the score's CDF, whose
tuning curves bound the expected best.
"""

from __future__ import annotations

import warnings

import numpy as np

from isobn.study.grid import GridPoint

BAND_LEVEL = 0.80  # opda's examples and Lourie et al.'s: 95% bands are vacuous at N ~ 15
BAND_MIN_TRIALS = 10  # fewer trials: bands span nearly the whole score range; none are drawn


def _max_weights(count: int, n: int) -> np.ndarray:
    """P(the largest of n draws with replacement from `count` sorted trials is the i-th),
    i = 1..count: (i/N)^n - ((i-1)/N)^n."""
    i = np.arange(1, count + 1, dtype=float)
    return (i / count) ** n - ((i - 1) / count) ** n


def expected_best(dev: list[float], n: int) -> float:
    """Expected maximum of `n` draws with replacement from the dev scores `dev` (Dodge et al.,
    2019): `sum_i v_(i) [(i/N)^n - ((i-1)/N)^n]`. NaN when a score is NaN."""
    values = np.sort(np.asarray(dev, dtype=float))
    if len(values) == 0 or n < 1:
        raise ValueError("expected_best needs at least one score and n >= 1")
    if np.isnan(values).any():
        return float("nan")
    return float(values @ _max_weights(len(values), n))


def expected_test_at_best(dev: list[float], test: list[float], n: int) -> float:
    """Expected test score of the trial with the best dev score among `n` draws with
    replacement (Bajgar et al., 2018, Boo_n): `sum_i t_[i] [(i/N)^n - ((i-1)/N)^n]` with the
    trials sorted by dev; trials tied on dev share their mass (their test scores averaged)."""
    dev_array, test_array = np.asarray(dev, dtype=float), np.asarray(test, dtype=float)
    if len(dev_array) != len(test_array) or len(dev_array) == 0 or n < 1:
        raise ValueError("expected_test_at_best needs paired, non-empty scores and n >= 1")
    if np.isnan(dev_array).any() or np.isnan(test_array).any():
        return float("nan")
    order = np.argsort(dev_array, kind="stable")
    dev_sorted, test_sorted = dev_array[order], test_array[order]
    weights = _max_weights(len(dev_sorted), n)
    total = 0.0
    for value in np.unique(dev_sorted):  # a tie's mass, shared by its trials
        tied = dev_sorted == value
        total += weights[tied].sum() * test_sorted[tied].mean()
    return float(total)


def expected_best_band(
    dev: list[float], budgets: list[int], low: float, high: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """(lower, upper) bounds of the expected best dev score at each budget from opda's
    simultaneous BAND_LEVEL confidence bands for the CDF of the dev score (Learned-Miller-
    DeStefano, equal-tailed; scores bounded by [low, high]); None with fewer than
    BAND_MIN_TRIALS trials, a NaN score, or without opda (pip install 'isobn[tuning]').
    Ties (scores are discrete: accuracy on a finite dev set) make the bands approximate."""
    values = np.asarray(dev, dtype=float)
    if len(values) < BAND_MIN_TRIALS or np.isnan(values).any():
        return None
    try:
        from opda.nonparametric import EmpiricalDistribution
    except ModuleNotFoundError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "duplicates detected": see above
        lower_cdf, _, upper_cdf = EmpiricalDistribution.confidence_bands(
            values,
            BAND_LEVEL,
            a=low,
            b=high,
            method="ld_equal_tailed",
            generator=np.random.default_rng(0),
            n_jobs=1,
        )
    ns = np.asarray(budgets)
    # a CDF above the true one is stochastically smaller: its tuning curve is the lower bound
    lower = upper_cdf.average_tuning_curve(ns)
    upper = lower_cdf.average_tuning_curve(ns)
    return np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)


def median_or_worst(values: list[float]) -> float:
    """The median, -inf without values or with an undefined (NaN) one: such a point is never
    chosen over one with a defined median."""
    if not values or np.isnan(values).any():
        return float("-inf")
    return float(np.median(values))


def choose_point(
    dev_by_point: dict[GridPoint, list[float]], order: list[GridPoint]
) -> GridPoint | None:
    """The grid point with the best median dev score over seeds; a tie goes to the first in
    `order` (the grid's order). None when no point has a defined median."""
    best, best_median = None, float("-inf")
    for point in order:
        median = median_or_worst(dev_by_point.get(point, []))
        if median > best_median:
            best, best_median = point, median
    return best


def budgets(count: int) -> list[int]:
    """The budgets a table shows: 1, 2, 3, 5, 10, 20, 50, ... up to and including N."""
    steps = [1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000]
    return [n for n in steps if n < count] + [count]


def record_point(record: dict) -> GridPoint:
    """A record's grid point, () for a cell without grid (isobn.study.binding.record_cell)."""
    return tuple(sorted((record.get("grid") or {}).items()))


def by_point(records: list[dict]) -> dict[tuple, dict[str, dict[GridPoint, dict[int, dict]]]]:
    """{(task, size): {method: {grid point: {seed: record}}}}."""
    groups: dict[tuple, dict[str, dict[GridPoint, dict[int, dict]]]] = {}
    for record in records:
        methods = groups.setdefault((record["task"], record["size"]), {})
        points = methods.setdefault(record["method"], {}).setdefault(record_point(record), {})
        points[record["seed"]] = record
    return groups


def trial_scores(points: dict[GridPoint, dict[int, dict]]) -> dict[str, list[float]]:
    """The dev scores of a method's trials and, when every trial has one, their test scores
    (paired with dev, in the same order)."""
    runs = [r for by_seed in points.values() for r in by_seed.values()]
    runs = [r for r in runs if r.get("dev_score") is not None]
    dev = [r["dev_score"] for r in runs]
    test = [r.get("test_score") for r in runs]
    return {"dev": dev, "test": test if all(t is not None for t in test) else []}


def score_range(points: dict[GridPoint, dict[int, dict]]) -> tuple[float, float]:
    """The range a main metric x 100 can take: [-100, 100] for a correlation or MCC, else
    [0, 100]."""
    runs = [r for by_seed in points.values() for r in by_seed.values()]
    metric = runs[0].get("main_metric", "") if runs else ""
    signed = any(word in metric for word in ("pearson", "spearman", "mcc", "matthews"))
    return (-100.0, 100.0) if signed else (0.0, 100.0)


__all__ = [
    "BAND_LEVEL",
    "BAND_MIN_TRIALS",
    "budgets",
    "by_point",
    "choose_point",
    "expected_best",
    "expected_best_band",
    "expected_test_at_best",
    "median_or_worst",
    "record_point",
    "score_range",
    "trial_scores",
]
