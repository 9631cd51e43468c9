"""IsotropyCallback: the isotropy of the classifier's input on Trainer's log stream.

At each evaluation (``every="eval"``) or every N optimizer steps (``every=N``) the callback runs
the model once, in eval mode and without gradients, over a fixed sample of an eval set (at most
``max_examples`` examples, chosen once with a fixed seed), through the trainer's own test
dataloader (its collator, batch size, column removal and device). Forward hooks at the site
where [`attach`][isobn.hf.inject.attach] puts IsoBN ([`sites`][isobn.hf.sites]) keep the
(N, D) vector entering the site and, with IsoBN attached, the vector leaving IsoBN, which is
what the head receives.
The callback logs, through ``trainer.log`` (so ``state.log_history`` and every ``report_to``
integration get them, at the current global step):

* ``eval_isotropy/KEY``: [`isotropy.report`][isobn.isotropy.report] of the vector before
  IsoBN, KEY one of ``isoscore`` (closed form), ``mean_abs_corr`` (mean |rho|), ``std_cv``,
  ``effective_rank``;
* ``eval_isotropy/after_isobn/KEY``: the same after IsoBN (IsoBN attached only);
* ``eval_isobn/scale_min``, ``scale_median``, ``scale_max``: IsoBN's per-dimension scale;
* ``eval_isotropy/examples``: N.

It reads nothing from the device between measurements (no work on the training step); a
measurement costs one forward pass over the sample and one copy of its vectors to the host.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from transformers import TrainerCallback

from isobn import isotropy
from isobn.hf.attached import attachment
from isobn.hf.sites import base_model, find_site
from isobn.isotropy_stats import TRANSFORM_METRICS

PREFIX = "eval_isotropy"
SCALE_PREFIX = "eval_isobn"
SAMPLE_SEED = 0  # the sample of the eval set: the same examples at every measurement


class IsotropyCallback(TrainerCallback):
    """Log the isotropy of the classifier's input on an eval sample (see the module's notes).

    Args:
        eval_dataset: a map-style dataset (``len`` and indexing: a torch ``Dataset``, a
            ``datasets.Dataset``, a list of feature dicts) that the trainer's collator batches.
        every: ``"eval"`` (after each evaluation) or N >= 1 (every N optimizer steps).
        max_examples: sample size (>= 2); a larger eval set is sampled once, without
            replacement, with a fixed seed.
        trainer: the ``Trainer`` whose log stream gets the values; give it here or set
            ``callback.trainer`` before training (a callback is not handed its trainer):
            ``trainer.add_callback(IsotropyCallback(dev, trainer=trainer))``.

    Raises:
        ValueError: a bad `every` or `max_examples`, a dataset without a length or with fewer
            than 2 examples; at the first event, no trainer.
    """

    def __init__(
        self,
        eval_dataset: Any,
        every: str | int = "eval",
        *,
        max_examples: int = 1000,
        trainer: Any = None,
    ) -> None:
        if not (every == "eval" or (type(every) is int and every >= 1)):
            raise ValueError(
                f'IsotropyCallback: every must be "eval" or a number of steps >= 1, got {every!r}'
            )
        if type(max_examples) is not int or max_examples < 2:
            raise ValueError(
                f"IsotropyCallback: max_examples must be an integer >= 2, got {max_examples!r}"
            )
        self.sample = _sample(eval_dataset, max_examples)
        self.every = every
        self.trainer = trainer

    # --- Trainer events (host-only checks; the work happens in measure()) ------------------

    def on_train_begin(self, args, state, control, **kwargs):
        self._require_trainer()

    def on_step_end(self, args, state, control, **kwargs):
        if self.every != "eval" and state.global_step % self.every == 0:
            self._require_trainer().log(self.measure())

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.every != "eval":
            return
        trainer = self._require_trainer()
        if not _first_of_an_evaluation(trainer, metrics or {}):
            return
        values = self.measure()
        trainer.log(dict(values))
        if metrics is not None:
            metrics.update(values)  # also in what trainer.evaluate() returns

    # --- the measurement ------------------------------------------------------------------

    def measure(self) -> dict[str, float]:
        """One pass over the sample; the values that go on the log (see the module)."""
        trainer = self._require_trainer()
        model = trainer.model
        gather = trainer.accelerator.gather_for_metrics
        before: list[Tensor] = []
        after: list[Tensor] = []
        with _captured(model) as capture, _eval_mode(model), torch.no_grad():
            for batch in trainer.get_test_dataloader(self.sample):
                model(**batch)
                before.append(gather(capture["before"].pop()))
                if capture["after"]:
                    after.append(gather(capture["after"].pop()))
        values = _isotropy(PREFIX, torch.cat(before))
        if after:
            values.update(_isotropy(f"{PREFIX}/after_isobn", torch.cat(after)))
        found = attachment(model)
        if found is not None:
            values.update(_scale_summary(found[2].scale()))
        return values

    def _require_trainer(self):
        if self.trainer is None:
            raise ValueError(
                "IsotropyCallback has no trainer to log to: create it with "
                "IsotropyCallback(eval_dataset, trainer=trainer) and trainer.add_callback(it)"
            )
        return self.trainer


def _sample(dataset: Any, max_examples: int) -> Any:
    """`dataset`, or a fixed random subset of `max_examples` of its examples (in their order)."""
    try:
        size = len(dataset)
    except TypeError:
        raise ValueError(
            "IsotropyCallback needs an eval_dataset with a length (a map-style dataset), got "
            f"{type(dataset).__name__}"
        ) from None
    if size < 2:
        raise ValueError(f"IsotropyCallback needs at least 2 eval examples, got {size}")
    if size <= max_examples:
        return dataset
    rng = np.random.default_rng(SAMPLE_SEED)
    indices = np.sort(rng.choice(size, max_examples, replace=False)).tolist()
    if hasattr(dataset, "select"):  # a datasets.Dataset stays one (Trainer drops its columns)
        return dataset.select(indices)
    return torch.utils.data.Subset(dataset, indices)


def _first_of_an_evaluation(trainer, metrics: dict) -> bool:
    """False for the 2nd, 3rd, ... eval set of a dict ``trainer.eval_dataset`` (Trainer
    evaluates each with its own ``on_evaluate``): the sample is measured once per evaluation."""
    if not isinstance(trainer.eval_dataset, dict) or not trainer.eval_dataset:
        return True
    others = [f"eval_{name}_" for name in list(trainer.eval_dataset)[1:]]
    return not any(key.startswith(prefix) for key in metrics for prefix in others)


@contextmanager
def _captured(model: nn.Module):
    """Forward hooks that collect the (B, D) vector entering IsoBN's site ("before") and,
    with IsoBN attached, the one IsoBN returns ("after"); removed on exit."""
    capture: dict[str, list[Tensor]] = {"before": [], "after": []}
    found = attachment(model)
    if found is not None:

        def keep_both(module, args, output):
            capture["before"].append(args[0].detach())
            capture["after"].append(output.detach())

        handle = found[2].register_forward_hook(keep_both)
    else:
        base = base_model(model)
        site = find_site(base)

        def keep_input(module, args, kwargs):
            x = args[0] if args else next(v for v in kwargs.values() if isinstance(v, Tensor))
            capture["before"].append((x[:, 0] if site.first_token else x).detach())

        handle = base.get_submodule(site.path).register_forward_pre_hook(
            keep_input, with_kwargs=True
        )
    try:
        yield capture
    finally:
        handle.remove()


@contextmanager
def _eval_mode(model: nn.Module):
    """The model in eval mode (IsoBN uses, and does not update, its estimates); every module's
    own mode back on exit."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes.items():
            module.training = mode


def _isotropy(prefix: str, vectors: Tensor) -> dict[str, float]:
    """The TRANSFORM_METRICS of isotropy.report on vectors (N, D): one copy to the host."""
    report = isotropy.report(vectors.float().cpu().numpy())
    values = {f"{prefix}/{key}": report[key] for key in TRANSFORM_METRICS}
    if prefix == PREFIX:
        values[f"{PREFIX}/examples"] = report["n"]
    return values


def _scale_summary(scale: Tensor) -> dict[str, float]:
    """Min, median and max of IsoBN's per-dimension scale (D,)."""
    values = scale.detach().double().cpu().numpy()
    return {
        f"{SCALE_PREFIX}/scale_min": float(values.min()),
        f"{SCALE_PREFIX}/scale_median": float(np.median(values)),
        f"{SCALE_PREFIX}/scale_max": float(values.max()),
    }
