"""The one inference loop: an encoded split -> per-row outputs (logits, pooled embeddings, ...).

``infer`` runs a forward function over length-sorted, dynamically padded batches in inference
mode (under the accelerator's autocast when one is given), shards the batches over the
accelerate ranks and gathers the rows on every rank, and returns float32 arrays in the order
of the split. It is used by training's evaluation (``predict``), ``isobn predict``,
``isobn analyze`` (through ``isobn.analysis.sources.embed``) and ``isobn demo``.

One process is the same code with world size 1: every batch is local and nothing is gathered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import nullcontext

import numpy as np
import torch
from torch import Tensor

from isobn.training.data import EncodedSplit, collate, sorted_batches

__all__ = ["Forward", "hidden_size", "infer", "predict"]

# batch (input_ids, attention_mask and maybe token_type_ids, each (B, T), on the device)
# -> named outputs, each (B, ...) with rows in the order of the batch
Forward = Callable[[dict[str, Tensor]], Mapping[str, Tensor]]


def hidden_size(config) -> int:
    """Width H of an HF encoder's hidden states: ``config.hidden_size``, or ``config.dim``
    (DistilBERT names it so)."""
    size = getattr(config, "hidden_size", None)
    return int(size if size is not None else config.dim)


def infer(
    forward: Forward,
    split: EncodedSplit,
    batch_size: int,
    pad_id: int,
    *,
    accelerator=None,
    device: str | torch.device | None = None,
    first_rows: Mapping[str, int] | None = None,
    desc: str | None = None,
) -> dict[str, np.ndarray]:
    """Run ``forward`` over every row of ``split``; returns {name: float32 (N, ...) array}.

    Batches are ``sorted_batches(split.lengths, batch_size)`` (decreasing length, padded to
    their longest row with ``pad_id``), labels are not passed. With an ``accelerator``, rank r
    of w runs batches r, r + w, ... on ``accelerator.device`` under ``accelerator.autocast()``
    and every rank receives all rows; without one, everything runs on ``device`` (default CPU)
    in the model's own precision. ``first_rows`` keeps only the rows with index < n of the
    named outputs (their arrays are (min(n, N), ...); n = 0 drops the output). Outputs are
    converted with ``.float()``, so half-precision activations come back as float32. ``desc``
    shows a progress bar with that title.
    """
    from tqdm.auto import tqdm

    first_rows = dict(first_rows or {})
    rank, world = 0, 1
    if accelerator is not None:
        rank, world = accelerator.process_index, accelerator.num_processes
    target = accelerator.device if accelerator is not None else (device or "cpu")
    batches = sorted_batches(split.lengths, batch_size)[rank::world]
    rows: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
    with torch.inference_mode():
        for indices in tqdm(batches, desc=desc, leave=False, disable=desc is None):
            batch = collate(split, indices, pad_id)
            batch.pop("labels")
            batch = {k: v.to(target) for k, v in batch.items()}
            with accelerator.autocast() if accelerator is not None else nullcontext():
                outputs = forward(batch)
            rows.append((indices, _to_numpy(outputs, indices, first_rows)))
    if world > 1:
        from accelerate.utils import gather_object

        rows = gather_object(rows)
    return _assemble(rows, len(split), first_rows)


def _to_numpy(
    outputs: Mapping[str, Tensor], indices: np.ndarray, first_rows: Mapping[str, int]
) -> dict[str, np.ndarray]:
    """One batch's outputs on the host as float32, cut to the kept rows."""
    host = {}
    for name, values in outputs.items():
        limit = first_rows.get(name)
        if limit == 0:
            continue
        if limit is not None:
            values = values[torch.as_tensor(indices < limit, device=values.device)]
        host[name] = values.float().cpu().numpy()
    return host


def _assemble(
    rows: list[tuple[np.ndarray, dict[str, np.ndarray]]], n: int, first_rows: Mapping[str, int]
) -> dict[str, np.ndarray]:
    """Per-batch outputs -> one float32 array per name, rows in the split's order."""
    result: dict[str, np.ndarray] = {}
    for indices, outputs in rows:
        for name, values in outputs.items():
            limit = first_rows.get(name)
            keep = indices if limit is None else indices[indices < limit]
            if name not in result:
                length = n if limit is None else min(limit, n)
                result[name] = np.zeros((length, *values.shape[1:]), dtype=np.float32)
            result[name][keep] = values
    return result


def predict(
    model,
    split: EncodedSplit,
    batch_size: int,
    pad_id: int,
    accelerator=None,
    embeddings_for: int = 0,
    *,
    device: str | torch.device | None = None,
    desc: str | None = None,
) -> dict[str, np.ndarray]:
    """Predictions of an ``isobn.training.model.SequenceClassifier`` for every row of ``split``.

    Returns {"predictions": (N,) class ids (argmax) or floats (regression), "logits": (N, C)
    float32, and, when ``embeddings_for`` > 0, "pooled" and "normed": (n, H) float32 of the
    first n = min(embeddings_for, N) rows}, the pooled embedding before and after the norm.
    Sharded over the accelerator's ranks and gathered on all of them (see ``infer``); without
    an accelerator it runs on ``device``, by default the model's.
    """

    def forward(batch: dict[str, Tensor]) -> dict[str, Tensor]:
        out = model(**batch)
        return {"logits": out.logits, "pooled": out.pooled, "normed": out.normed}

    model.eval()
    if accelerator is None and device is None:
        device = next(model.parameters()).device
    limits = {"pooled": embeddings_for, "normed": embeddings_for}
    outputs = infer(
        forward,
        split,
        batch_size,
        pad_id,
        accelerator=accelerator,
        device=device,
        first_rows=limits,
        desc=desc,
    )
    logits = outputs.get("logits")
    if logits is None:  # an empty split
        logits = np.zeros((len(split), model.classifier.out_features), dtype=np.float32)
    predictions = logits[:, 0] if model.config.regression else logits.argmax(-1)
    result = {"predictions": predictions, "logits": logits}
    if embeddings_for > 0 and len(split) > 0:
        result["pooled"], result["normed"] = outputs["pooled"], outputs["normed"]
    return result
