"""The losses of the micro-batches since the last read, summed on the device.

The training loop adds every micro-batch's losses here without reading them: on a GPU a read
(`.item()`, `bool(t)`) is a sync that stops the host from queueing the next step. They are read
once per log line, evaluation and checkpoint write, with the first non-finite loss among them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class LossRead:
    """What one read found: per-term sums and the count of micro-batches they cover; the
    optimizer step and the value of the first non-finite total loss, None when all were finite."""

    sums: dict[str, float]
    count: int
    nonfinite_step: int | None = None
    nonfinite_loss: float | None = None


class RunningLosses:
    """Sums of the detached scalar losses of `training_step` ("loss", maybe "task" and one per
    regulariser), in float64 (float32 where the device has none), since the last `read()`.

    Per micro-batch, `add` queues a few scalar ops (stack, add, isfinite, where) and reads
    nothing. The first non-finite total loss is kept as (step, value) on the device, so that
    `read()` can name it however many steps later it comes.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self.dtype = torch.float32 if self.device.type == "mps" else torch.float64
        self.names: list[str] = []
        self.count = 0
        self._sums: torch.Tensor | None = None  # (T,) per term
        self._reset_first()

    def _reset_first(self) -> None:
        # step and value of the first non-finite loss since the last read; step inf: none yet
        self._first_step = torch.full((), math.inf, dtype=self.dtype, device=self.device)
        self._first_loss = torch.zeros((), dtype=self.dtype, device=self.device)

    def add(self, losses: dict[str, torch.Tensor], step: int) -> None:
        """Add one micro-batch's losses (0-d tensors, "loss" first; the same names every time),
        taken at optimizer step `step` (the steps done before it)."""
        if self._sums is None:
            self.names = list(losses)
            self._sums = torch.zeros(len(self.names), dtype=self.dtype, device=self.device)
        values = torch.stack([losses[name].detach() for name in self.names]).to(self.dtype)
        self._sums += values
        loss = values[0]
        # the first since the last read: no step kept yet (inf) and this one not finite
        first = torch.isfinite(loss).logical_not_() & torch.isinf(self._first_step)
        self._first_step = torch.where(first, step, self._first_step)  # a scalar: no copy
        self._first_loss = torch.where(first, loss, self._first_loss)
        self.count += 1

    def read(self, world_size: int = 1) -> LossRead:
        """The sums and the first non-finite loss since the last read, then start afresh: one
        host read (and, with `world_size` > 1, one all-reduce, so that every process sees a
        non-finite loss of any of them). Reads nothing when nothing was added."""
        if self._sums is None:
            return LossRead({}, 0)
        first_step = self._first_step.reshape(1)
        if world_size > 1:
            import torch.distributed as dist

            first_step = first_step.clone()
            dist.all_reduce(first_step, op=dist.ReduceOp.MIN)
        packed = torch.cat([first_step, self._first_step.reshape(1), self._first_loss.reshape(1)])
        any_step, my_step, my_loss, *sums = torch.cat([packed, self._sums]).tolist()  # the read
        read = LossRead(dict(zip(self.names, sums)), self.count)
        if not math.isinf(any_step):  # here, or on another process
            read.nonfinite_step = int(any_step)
            read.nonfinite_loss = my_loss if my_step == any_step else math.nan
        self._sums, self.count = None, 0
        self._reset_first()
        return read
