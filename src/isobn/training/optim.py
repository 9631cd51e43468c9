"""The optimisation of a run: AdamW and its parameter groups, the precision (autocast and the
fp16 loss scale) and one optimizer step with clipping and the schedule.

The precision is applied here, per run, and not through accelerate's `mixed_precision`:
accelerate keeps that in a process-wide state that cannot change once set, while one process
may train several configurations (an experiment grid, a notebook). torch.autocast and the
GradScaler are what accelerate's native mixed precision uses underneath.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.torch_version import TorchVersion

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on matrices only; biases and norm weights (1-D) are not decayed."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def fused_adamw_supported(device: torch.device, version: str = torch.__version__) -> bool:
    """Whether AdamW(fused=True) runs on `device` with this torch: CUDA since torch 2.0, the
    CPU since 2.4. Elsewhere, and on older versions, torch's default implementation."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and TorchVersion(version) >= "2.4"


def adamw(
    model: nn.Module, learning_rate: float, weight_decay: float, eps: float = 1e-8
) -> torch.optim.AdamW:
    """AdamW over `model`'s parameters (on their final device), fused where supported: one
    kernel for all parameters (5.7x faster steps than the for-loop on 2 CPU cores).

    `eps` is added to the root of the bias-corrected second moment, p -= lr * m / (sqrt(v) + eps)
    (torch's placement); 1e-8 is torch's default."""
    device = next(model.parameters()).device
    return torch.optim.AdamW(
        parameter_groups(model, weight_decay),
        lr=learning_rate,
        eps=eps,
        fused=fused_adamw_supported(device) or None,
    )


@dataclass
class Precision:
    """fp32, or autocast to bf16 / fp16 (fp16 with a dynamic loss scale, CUDA only)."""

    name: str = "fp32"  # fp32, bf16 or fp16
    device_type: str = "cpu"
    scaler: Any = field(init=False, default=None)  # torch GradScaler for fp16

    def __post_init__(self) -> None:
        if self.name == "fp16":
            self.scaler = _grad_scaler(self.device_type)

    def autocast(self):
        dtype = AUTOCAST_DTYPES[self.name]
        if dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=dtype)


def _grad_scaler(device_type: str):
    if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
        return torch.amp.GradScaler(device_type)
    return torch.cuda.amp.GradScaler()


@dataclass
class Optimisation:
    """What an optimizer step needs. `accelerator` None: plain torch in one process (the
    benchmarks); else its backward and gradient clipping (DDP, FSDP, ...)."""

    optimizer: torch.optim.Optimizer
    scheduler: Any = None  # stepped after every optimizer step
    precision: Precision = field(default_factory=Precision)
    max_grad_norm: float = 1.0  # 0: no clipping
    grad_accum: int = 1  # micro-batches per optimizer step
    accelerator: Any = None

    def backward(self, loss: torch.Tensor) -> None:
        """Gradients of loss / grad_accum (times the fp16 loss scale)."""
        loss = loss / self.grad_accum
        if self.precision.scaler is not None:
            loss = self.precision.scaler.scale(loss)
        if self.accelerator is not None:
            self.accelerator.backward(loss)
        else:
            loss.backward()

    def step(self, model: nn.Module) -> None:
        """Clip the gradients to max_grad_norm (unless 0), step the optimizer and the schedule,
        zero. Reads nothing from the device: the clipping norm stays a tensor, and the fp16 loss
        scale is given the torch optimizer itself, which (fused AdamW) skips a step with
        non-finite gradients on the device; given accelerate's wrapper, GradScaler would read
        its overflow flag on the host at every step."""
        scaler = self.precision.scaler
        if scaler is not None:
            scaler.unscale_(self.inner_optimizer())
        if self.max_grad_norm > 0 and self.accelerator is not None:
            self.accelerator.clip_grad_norm_(model.parameters(), self.max_grad_norm)
        elif self.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(model.parameters(), self.max_grad_norm)
        if scaler is not None:
            scaler.step(self.inner_optimizer())  # skipped when the gradients overflowed
            scaler.update()
        else:
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def inner_optimizer(self) -> torch.optim.Optimizer:
        """The torch optimizer (accelerate wraps it after prepare)."""
        return getattr(self.optimizer, "optimizer", self.optimizer)


def compute_loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    """The task loss: cross-entropy over classes, or mean squared error (one output)."""
    logits = logits.float()
    if regression:
        return nn.functional.mse_loss(logits.squeeze(-1), labels.float())
    return nn.functional.cross_entropy(logits, labels)
