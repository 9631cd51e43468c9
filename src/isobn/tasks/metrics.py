"""Evaluation metrics: pure functions of ``(preds, labels)`` arrays.

Every function takes predictions first and gold labels second (the reverse of scikit-learn's
``(y_true, y_pred)``) and returns a plain ``float``. Classification predictions are class
indices, regression predictions are floats. Empty inputs or inputs of different lengths raise
``ValueError``.

Correlations (``pearson``, ``spearman``) are undefined (0 / 0) when either side is constant.
Constant gold labels (or fewer than two) are a property of the data: no model can be scored
on them, and the correlations are NaN ("undefined" in tables, never a number). Constant
predictions against varying labels are the model's doing: they score ``0.0``, "no
correlation", so that a collapsed model ranks below any that tracks the labels and early
stopping keeps working. ``matthews_corrcoef`` likewise returns ``0.0`` for constant
predictions (scikit-learn's convention).

GLUE metric names (``glue_metrics``), main metric marked with ``*``:

| task                  | metrics                                                        |
|-----------------------|----------------------------------------------------------------|
| cola                  | ``mcc``\\*                                                      |
| sst2, qnli, rte, wnli | ``accuracy``\\*                                                 |
| mrpc, qqp             | ``f1``, ``accuracy``, ``f1_accuracy``\\* (their mean)            |
| stsb                  | ``pearson``, ``spearman``, ``pearson_spearman``\\* (their mean)  |
| mnli                  | ``matched_accuracy``, ``mismatched_accuracy``, ``accuracy_mean``\\* |
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

# scikit-learn and scipy are imported inside the functions: they take seconds to import, and
# importing isobn.tasks (e.g. to list task names in the CLI) should not pay for that.

__all__ = [
    "GLUE_MAIN_METRIC",
    "accuracy",
    "classification_metrics",
    "f1",
    "glue_metrics",
    "macro_f1",
    "matthews_corrcoef",
    "pearson",
    "regression_metrics",
    "spearman",
]

#: Main metric (used for early stopping and model selection) of each GLUE task.
GLUE_MAIN_METRIC: dict[str, str] = {
    "cola": "mcc",
    "sst2": "accuracy",
    "mrpc": "f1_accuracy",
    "stsb": "pearson_spearman",
    "qqp": "f1_accuracy",
    "mnli": "accuracy_mean",
    "qnli": "accuracy",
    "rte": "accuracy",
    "wnli": "accuracy",
}


def _pair(preds: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(preds).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"{p.shape[0]} predictions but {y.shape[0]} labels")
    if p.size == 0:
        raise ValueError("cannot compute a metric on zero examples")
    return p, y


def accuracy(preds: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of predictions equal to the label."""
    p, y = _pair(preds, labels)
    return float(np.mean(p == y))


def f1(preds: ArrayLike, labels: ArrayLike) -> float:
    """Binary F1 of the positive class 1: ``2 TP / (2 TP + FP + FN)``; 0.0 if that is 0/0."""
    from sklearn.metrics import f1_score

    p, y = _pair(preds, labels)
    return float(f1_score(y, p, pos_label=1, average="binary", zero_division=0))


def macro_f1(preds: ArrayLike, labels: ArrayLike) -> float:
    """Unweighted mean of per-class F1 over the classes present in ``preds`` or ``labels``."""
    from sklearn.metrics import f1_score

    p, y = _pair(preds, labels)
    return float(f1_score(y, p, average="macro", zero_division=0))


def matthews_corrcoef(preds: ArrayLike, labels: ArrayLike) -> float:
    """Matthews correlation (multi-class form of Gorodkin 2004); 0.0 for constant predictions.

    Binary case: ``(TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))``.
    """
    from sklearn.metrics import matthews_corrcoef as sk_mcc

    p, y = _pair(preds, labels)
    return float(sk_mcc(y, p))


def _correlation(preds: ArrayLike, labels: ArrayLike, scipy_name: str) -> float:
    """scipy's correlation of the two sides; NaN for constant labels, 0.0 for constant
    predictions (see the module docstring)."""
    p, y = _pair(preds, labels)
    p, y = p.astype(np.float64), y.astype(np.float64)
    if y.size < 2 or bool(np.all(y == y[0])):
        return math.nan
    if bool(np.all(p == p[0])):
        return 0.0
    import scipy.stats

    return float(getattr(scipy.stats, scipy_name)(p, y)[0])


def pearson(preds: ArrayLike, labels: ArrayLike) -> float:
    """Pearson correlation; NaN for constant labels, 0.0 for constant predictions."""
    return _correlation(preds, labels, "pearsonr")


def spearman(preds: ArrayLike, labels: ArrayLike) -> float:
    """Spearman rank correlation (average ranks for ties); NaN for constant labels, 0.0 for
    constant predictions."""
    return _correlation(preds, labels, "spearmanr")


def classification_metrics(
    preds: ArrayLike, labels: ArrayLike, *, positive_f1: bool = False
) -> dict[str, float]:
    """``accuracy`` and ``macro_f1``; with ``positive_f1`` also binary ``f1`` of class 1."""
    out = {"accuracy": accuracy(preds, labels), "macro_f1": macro_f1(preds, labels)}
    if positive_f1:
        out["f1"] = f1(preds, labels)
    return out


def regression_metrics(preds: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """``pearson``, ``spearman`` and their mean ``pearson_spearman`` (NaN when the labels
    are constant)."""
    r, rho = pearson(preds, labels), spearman(preds, labels)
    return {"pearson": r, "spearman": rho, "pearson_spearman": (r + rho) / 2}


def _glue_single(task_name: str, preds: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    if task_name == "cola":
        return {"mcc": matthews_corrcoef(preds, labels)}
    if task_name in ("sst2", "qnli", "rte", "wnli", "mnli"):
        return {"accuracy": accuracy(preds, labels)}
    if task_name in ("mrpc", "qqp"):
        f, acc = f1(preds, labels), accuracy(preds, labels)
        return {"f1": f, "accuracy": acc, "f1_accuracy": (f + acc) / 2}
    if task_name == "stsb":
        return regression_metrics(preds, labels)
    raise ValueError(f"unknown GLUE task {task_name!r}; known: {', '.join(GLUE_MAIN_METRIC)}")


def glue_metrics(
    task_name: str,
    preds: ArrayLike | Mapping[str, ArrayLike],
    labels: ArrayLike | Mapping[str, ArrayLike],
) -> dict[str, float]:
    """The official GLUE metrics of ``task_name`` plus its main metric (see module docstring).

    For ``mnli``, ``preds`` and ``labels`` are mappings with keys ``"matched"`` and
    ``"mismatched"`` (a ``"dev_"`` prefix is accepted); the result holds
    ``matched_accuracy``, ``mismatched_accuracy`` and their mean ``accuracy_mean``.
    Plain arrays for ``mnli`` score one split: ``accuracy`` and ``accuracy_mean`` (equal).
    """
    if task_name not in GLUE_MAIN_METRIC:
        raise ValueError(f"unknown GLUE task {task_name!r}; known: {', '.join(GLUE_MAIN_METRIC)}")
    if isinstance(preds, Mapping) or isinstance(labels, Mapping):
        if task_name != "mnli":
            raise ValueError(f"per-split mappings are only meaningful for mnli, not {task_name!r}")
        if not isinstance(preds, Mapping) or not isinstance(labels, Mapping):
            raise ValueError("preds and labels must both be mappings for mnli")
        if set(preds) != set(labels) or not preds:
            raise ValueError(f"preds has splits {sorted(preds)} but labels has {sorted(labels)}")
        out: dict[str, float] = {}
        for split in preds:
            out[f"{split.removeprefix('dev_')}_accuracy"] = accuracy(preds[split], labels[split])
        out["accuracy_mean"] = float(np.mean(list(out.values())))
        return out
    out = _glue_single(task_name, preds, labels)
    if task_name == "mnli":
        out["accuracy_mean"] = out["accuracy"]
    return out
