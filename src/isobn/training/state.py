"""`TrainState`: where a training run is, saved in last/ and read back by --resume."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field


@dataclass
class TrainState:
    """Where a run is; saved as last/trainer_state.json beside the weights, optimizer,
    scheduler and generator states, and read back by --resume."""

    epoch: int = 0  # epochs done
    micro_step: int = 0  # micro-batches done in this epoch (per rank)
    global_step: int = 0  # optimizer steps
    best_metric: float | None = None  # the task's main dev metric of best/
    best_epoch: float | None = None
    best_dev: dict | None = None  # every dev metric of best/
    evals_without_improvement: int = 0
    train_seconds: float = 0.0  # wall time of training and evaluation so far
    step_seconds: float = 0.0  # time in collate, forward, backward and optimizer steps
    samples: int = 0  # training rows seen, all ranks
    stopped_early: bool = False
    running_loss: float = 0.0  # sum of micro-batch losses since the last log line
    running_count: int = 0
    # per loss term ("task" and each regulariser) since the last log line; empty without
    # regularisers
    running_terms: dict[str, float] = field(default_factory=dict)
    scaler: dict | None = None  # the fp16 loss scale's state

    @classmethod
    def from_dict(cls, values: dict) -> TrainState:
        """The state saved by asdict(); ValueError naming a value of the wrong type."""
        hints = typing.get_type_hints(cls)
        known = {k: v for k, v in values.items() if k in hints}
        for key, value in known.items():
            if not _of_type(value, hints[key]):
                kind = getattr(hints[key], "__name__", hints[key])
                raise ValueError(f"{key} is {value!r}, not {kind}")
        return cls(**known)


def _of_type(value, hint) -> bool:
    """isinstance for the simple hints of TrainState (int, float, bool, dict, X | None); an
    int is a float here, a bool is not a number."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    for kind in typing.get_args(hint) if union else (hint,):
        kind = typing.get_origin(kind) or kind
        if kind is type(None) and value is None:
            return True
        if kind in (int, float) and isinstance(value, bool):
            continue
        if kind is float and isinstance(value, int | float):
            return True
        if kind is not type(None) and isinstance(value, kind):
            return True
    return False
