"""What training measures with the model in inference mode, through the one inference loop
(isobn.training.embeddings): task metrics and the isotropy of the dev embedding, and the reference
embeddings of regularisers that compare a batch with the training set (I-STAR)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from isobn.training.data import EncodedSplit

logger = logging.getLogger(__name__)

CONSTANT_RTOL = 1e-5  # a range this small against the largest value: float rounding only


@dataclass
class EvalSettings:
    """How a run evaluates: batches, padding, the accelerator's ranks and autocast."""

    batch_size: int
    pad_id: int
    accelerator: Any
    precision: Any  # isobn.training.optim.Precision
    isotropy_examples: int = 0  # first dev rows whose embeddings are measured


def evaluate(
    model,
    task,
    encoded: dict[str, EncodedSplit],
    splits,
    settings: EvalSettings,
    warn_constant: bool = False,
):
    """(task metrics over `splits`, isotropy of the first split's pooled embedding before and
    after the method's norm, the classifier input, or {} without it): {"before_norm":
    isotropy.report, "after_norm": isotropy.report}, the two equal without a norm. With
    `warn_constant`, a warning when that pooled embedding is one vector for every text
    (`constant_embedding`), from the rows already measured."""
    from isobn import isotropy
    from isobn.training.embeddings import predict

    outputs, embeddings = {}, None
    for i, name in enumerate(splits):
        with settings.precision.autocast():
            result = predict(
                model,
                encoded[name],
                settings.batch_size,
                settings.pad_id,
                settings.accelerator,
                embeddings_for=settings.isotropy_examples if i == 0 else 0,
            )
        outputs[name] = (result["predictions"], encoded[name].labels.numpy())
        if "pooled" in result:
            embeddings = result
    metrics = {k: float(v) for k, v in task.score(outputs).items()}
    iso = {}
    if embeddings is not None and len(embeddings["pooled"]) >= 2:
        if warn_constant and constant_embedding(embeddings["pooled"]):
            logger.warning(
                "the pooled embedding (--pooling %s) is the same vector for all %d %s texts "
                "measured: the classifier cannot tell texts apart; check the model and "
                "--pooling (a causal decoder needs --pooling last or mean)",
                model.config.pooling, len(embeddings["pooled"]), splits[0],
            )  # fmt: skip
        before = isotropy.report(embeddings["pooled"])
        # without a norm the classifier input is the pooled tensor itself: one measurement
        identity = transform_labels(model)["transform"] == "identity"
        after = dict(before) if identity else isotropy.report(embeddings["normed"])
        iso = {"before_norm": before, "after_norm": after}
    return metrics, iso


def constant_embedding(pooled: np.ndarray) -> bool:
    """Whether the (N, D) rows of `pooled` (N >= 2) are one vector up to float rounding: the
    largest per-dimension range max_d (max_n x - min_n x) <= CONSTANT_RTOL * max |x|."""
    pooled = np.asarray(pooled, dtype=np.float64)
    return bool(np.ptp(pooled, axis=0).max() <= CONSTANT_RTOL * np.abs(pooled).max())


def transform_labels(model) -> dict[str, str]:
    """What `evaluate`'s isotropy is of: {"method": the canonical spec, "transform": its norm
    part's canonical spec, or "identity" when it has none (none, correg, istar: regularisers
    change the embedding only through training, so "after_norm" is "before_norm")}."""
    from isobn.methods import parse_method

    spec = parse_method(model.config.method)
    return {"method": str(spec), "transform": spec.transform}


def describe_isotropy(labels: dict[str, str], iso: dict[str, dict]) -> str:
    """One line for the training log: `transform_labels` and `evaluate`'s isotropy in words
    (isobn.isotropy_stats.describe_transform)."""
    from isobn.isotropy_stats import describe_transform

    return describe_transform(
        labels["method"], labels["transform"], iso["before_norm"], iso["after_norm"]
    )


class TestView:
    """Scores test splits with a task's dev scorer (test split names map onto dev names)."""

    def __init__(self, task, test_splits: list[str]) -> None:
        self.task, self.test_splits = task, test_splits

    def score(self, outputs: dict) -> dict:
        renamed = {dev: outputs[test] for dev, test in zip(self.task.dev_splits, self.test_splits)}
        return self.task.score(renamed)


def set_references(model, split: EncodedSplit, n: int, settings: EvalSettings) -> None:
    """Give every regulariser of `model` that has `set_reference(pooled (N, H))` the pooled
    embeddings of the first `n` rows of `split`, computed in inference mode. Each rank passes
    its share (rows rank, rank + world, ...); the regulariser combines the ranks' statistics."""
    from isobn.training.embeddings import infer

    takers = [r for r in model.regularisers if hasattr(r, "set_reference")]
    n = min(n, len(split))
    if not takers or n < 2:
        return  # every rank decides alike: set_reference may be a collective
    accelerator = settings.accelerator
    rows = np.arange(accelerator.process_index, n, accelerator.num_processes)
    mine = EncodedSplit(
        [split.input_ids[i] for i in rows],
        None if split.token_type_ids is None else [split.token_type_ids[i] for i in rows],
        split.labels[torch.as_tensor(rows)],
    )
    model.eval()
    with settings.precision.autocast():
        pooled = infer(
            lambda batch: {"pooled": model.pool(**batch)},
            mine,
            settings.batch_size,
            settings.pad_id,
            device=accelerator.device,
        ).get("pooled", np.zeros((0, model.classifier.in_features), np.float32))  # no rows here
    model.train()
    pooled = torch.from_numpy(pooled).to(accelerator.device)  # (n / world, H) float32
    for regulariser in takers:
        regulariser.set_reference(pooled)
