"""Example and Task: the labelled splits of one task and how predictions on them are scored."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

import isobn.tasks.metrics as metrics

__all__ = ["Example", "SplitMetrics", "Task"]

# (preds, labels) -> metrics; with several dev splits both are {split: array} mappings
SplitMetrics = Callable[..., dict[str, float]]


@dataclass(frozen=True)
class Example:
    """One labelled input: a text, an optional second text, a class index or a float target."""

    text: str
    text_pair: str | None
    label: int | float


@dataclass
class Task:
    """Labelled splits of one task and how to score predictions on them.

    ``splits`` always has ``"train"``, every name in ``dev_splits``, and ``"test"`` only when
    labelled test data exist. ``split_metrics`` maps ``(preds, labels)`` to a metrics dict;
    ``None`` means accuracy + macro F1 (classification) or Pearson + Spearman (regression).
    ``input_columns`` names the text and second-text columns (second None: single texts).
    """

    name: str
    regression: bool
    label_names: list[str]
    splits: dict[str, list[Example]] = field(repr=False)
    dev_splits: list[str]
    main_metric: str
    split_metrics: SplitMetrics | None = field(default=None, repr=False, compare=False)
    # the columns of the input in the task's files: text, second text (None: single texts);
    # what a checkpoint records, so that `isobn predict` reads what the model was trained on
    input_columns: tuple[str, str | None] = ("text", None)

    @property
    def num_labels(self) -> int:
        """Output size of the head: 1 for regression, else the number of classes."""
        return 1 if self.regression else len(self.label_names)

    def score(self, outputs: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
        """Metrics of ``{split: (predictions, labels)}``, with the main metric included.

        One split: ``split_metrics(preds, labels)`` (unprefixed keys, ``{"accuracy": ..}``).
        Several splits (mnli's two dev sets): ``split_metrics`` gets ``{split: preds}`` and
        ``{split: labels}`` and combines them; for GLUE that is ``metrics.glue_metrics``, the one
        place where mnli's ``matched_accuracy`` and ``mismatched_accuracy`` are averaged into
        ``accuracy_mean``.
        """
        if not outputs:
            raise ValueError(f"nothing to score for task {self.name!r}")
        preds = {split: np.asarray(p) for split, (p, _) in outputs.items()}
        labels = {split: np.asarray(y) for split, (_, y) in outputs.items()}
        if len(outputs) == 1:
            [(split, p)] = preds.items()
            result = self._split_metrics(p, labels[split])
        elif self.split_metrics is None:
            raise ValueError(
                f"task {self.name!r} scores one split at a time, got {sorted(outputs)}; "
                "give it split_metrics that accept {split: array} mappings"
            )
        else:
            result = self.split_metrics(preds, labels)
        if self.main_metric not in result:
            raise ValueError(f"metrics {sorted(result)} lack main metric {self.main_metric!r}")
        return dict(result)

    def _split_metrics(self, preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        if self.split_metrics is not None:
            return self.split_metrics(preds, labels)
        if self.regression:
            return metrics.regression_metrics(preds, labels)
        return metrics.classification_metrics(preds, labels)
