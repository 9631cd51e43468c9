"""All-reduce of additive statistics across processes; a no-op on one process."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world_size(process_group=None) -> int:
    """Number of processes in `process_group` (1 when torch.distributed is not initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(process_group)


def all_reduce_sum(tensor: Tensor, process_group=None) -> Tensor:
    """Sum `tensor` over all ranks (in place, also returned); unchanged with one process.

    NCCL reduces CUDA tensors only: a CPU tensor is moved to the current GPU and back.
    """
    if world_size(process_group) == 1:
        return tensor
    backend = dist.get_backend(process_group)
    device = tensor.device
    if backend == "nccl" and device.type != "cuda":
        work = tensor.to(torch.device("cuda", torch.cuda.current_device()))
    else:
        work = tensor
    dist.all_reduce(work, op=dist.ReduceOp.SUM, group=process_group)
    if work is not tensor:
        tensor.copy_(work)
    return tensor
