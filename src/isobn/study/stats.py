"""Statistics of a study: summaries over seeds, seed-paired differences, stability.

Conventions: scores are the task's main metric x 100; `std` is the sample standard deviation
over seeds (ddof = 1); 95% intervals are percentile bootstrap intervals of the mean (scipy,
10,000 resamples, fixed random state, so a table is the same each time it is written);
p-values are two-sided Wilcoxon signed-rank tests of the seed-paired differences.
"""

from __future__ import annotations

import numpy as np

from isobn.training.report import summarize, wilcoxon_p

BASELINE = "none"


def bootstrap_interval(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean; None for fewer than 3 values (two values give
    an interval that is only their range); (v, v) when every value is v; (NaN, NaN) when a
    value is NaN (an undefined score: the mean is undefined too)."""
    array = np.asarray(values, dtype=float)
    if len(array) < 3:
        return None
    if np.isnan(array).any():
        return float("nan"), float("nan")
    if np.all(array == array[0]):
        return float(array[0]), float(array[0])
    from scipy.stats import bootstrap

    result = bootstrap(
        (array,),
        np.mean,
        confidence_level=level,
        n_resamples=10_000,
        method="percentile",
        random_state=np.random.default_rng(0),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def summary(values: list[float]) -> dict:
    """n, median, std, mean, best and the 95% bootstrap interval of the mean of per-seed
    scores (the experiment tables' summary plus the interval)."""
    return {**summarize(values), "ci": bootstrap_interval(values)}


def paired(ours: dict[int, float], base: dict[int, float]) -> dict | None:
    """Seed-paired differences ours - base over the seeds both have: mean with its 95%
    interval, wins/ties/losses, the number of undefined (NaN) differences, and the Wilcoxon
    p-value; None without common seeds. An undefined difference makes the mean, interval and
    p-value undefined (NaN) rather than being dropped."""
    seeds = sorted(set(ours) & set(base))
    if not seeds:
        return None
    diffs = [ours[s] - base[s] for s in seeds]
    return {
        "n": len(seeds),
        "seeds": seeds,
        "diffs": diffs,
        "mean_diff": float(np.mean(diffs)),
        "median_diff": float(np.median(diffs)),
        "ci": bootstrap_interval(diffs),
        "wins": sum(d > 0 for d in diffs),
        "ties": sum(d == 0 for d in diffs),
        "losses": sum(d < 0 for d in diffs),
        "undefined": int(np.isnan(diffs).sum()),
        "p_wilcoxon": wilcoxon_p(diffs),
    }


def failed(record: dict) -> bool:
    """A run failed when its dev main metric is no better than predicting the majority
    training class (Mosbach et al., ICLR 2021); regression runs are never counted. The
    record keeps the majority score to 4 decimals, so "no better" allows that rounding
    (one dev example moves a score by far more)."""
    majority = record.get("majority_dev_score")
    score = record.get("dev_score")
    return majority is not None and score is not None and score <= majority + 1e-4


def group(records: list[dict]) -> dict[tuple, dict[str, dict[int, dict]]]:
    """{(task, size): {method: {seed: record}}}."""
    groups: dict[tuple, dict[str, dict[int, dict]]] = {}
    for record in records:
        key = (record["task"], record["size"])
        groups.setdefault(key, {}).setdefault(record["method"], {})[record["seed"]] = record
    return groups


def scores(by_seed: dict[int, dict], split: str) -> dict[int, float]:
    field = f"{split}_score"
    return {s: r[field] for s, r in by_seed.items() if r.get(field) is not None}


def spearman(x: list[float], y: list[float]) -> tuple[float, float] | None:
    """Spearman's rho and its p-value; None for fewer than 4 points or a constant side."""
    if len(x) < 4 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    from scipy.stats import spearmanr

    result = spearmanr(x, y)
    return float(result.statistic), float(result.pvalue)
