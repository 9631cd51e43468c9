"""The parts a training run is built from, each from the run's TrainConfig:

make_accelerator     the device and the processes (accelerate), trackers (--report-to)
load_data            tokenizer, task, the splits tokenised once
build_classifier     encoder + pooling + method + head (isobn.training.model), on the device
build_optimisation   AdamW, the linear schedule, the precision (isobn.training.optim)
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from isobn.assets import require
from isobn.errors import UserError, first_line
from isobn.training.config import DEFAULT_TASK, TrainConfig, load_run_task
from isobn.training.data import EncodedSplit, check_tokens, encode, length_grouped_batches
from isobn.training.model import ModelConfig, SequenceClassifier, build_model
from isobn.training.optim import Optimisation, Precision, adamw
from isobn.training.pooling import check_pooler
from isobn.training.pretrained import (
    check_tokenizer_numbers,
    load_encoder_config,
    load_tokenizer,
    looks_local,
    model_file,
    request_segment_ids,
    resolve_model_path,
)


@dataclass
class RunData:
    task: Any  # isobn.tasks.Task
    tokenizer: Any
    encoded: dict[str, EncodedSplit]  # every split, tokenised once
    pad_id: int


# --report-to NAME -> accelerate's `log_with`: a tracker name, or a GeneralTracker instance
TRACKERS: dict[str, Any] = {"tensorboard": "tensorboard", "wandb": "wandb"}


def make_accelerator(cfg: TrainConfig):
    """accelerate's Accelerator: the device and the processes (torchrun, accelerate launch),
    and the trackers of --report-to. Precision is not asked of it (see isobn.training.optim)."""
    from accelerate import Accelerator

    several = int(os.environ.get("WORLD_SIZE", 1)) > 1
    trackers = {}
    if cfg.report_to != "none":
        trackers = {"log_with": _tracker(cfg.report_to), "project_dir": cfg.out}
    try:
        accelerator = Accelerator(
            mixed_precision="no",
            # accelerate runs several CPU processes (gloo) only when told to use the CPU
            cpu=cfg.cpu or (not torch.cuda.is_available() and several),
            **trackers,
        )
    except ValueError as error:  # e.g. --cpu in a process that already uses the GPU
        raise UserError(f"cannot set up training: {first_line(error)}") from None
    if cfg.precision == "fp16" and accelerator.device.type == "cpu":
        raise UserError("fp16 needs a GPU: use --precision bf16 or fp32 on the CPU")
    if cfg.report_to != "none":
        config = {k: v for k, v in asdict(cfg).items() if v is not None}
        accelerator.init_trackers(Path(cfg.out).name or "isobn", config=config)
    return accelerator


def _tracker(name: str):
    """accelerate's tracker for --report-to `name`; a one-line error when its package is
    missing (accelerate would drop it silently)."""
    from accelerate.utils import is_tensorboard_available, is_wandb_available

    tracker = TRACKERS[name]
    available = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available}[name]
    if isinstance(tracker, str) and not available():
        raise UserError(f"--report-to {name} needs {name}: pip install 'isobn[{name}]'")
    return tracker


def load_data(cfg: TrainConfig) -> RunData:
    """The tokenizer, the task and every split tokenised once. Local inputs are checked before
    anything remote: a local model path first, local data (files, --data-dir, a packaged task)
    before a hub tokenizer, and a local tokenizer before any data."""
    from isobn.training.max_length import check_max_length

    model_is_local = cfg.model == "minilm" or looks_local(cfg.model)
    if model_is_local:
        resolve_model_path(cfg.model)  # a missing local model: refused before any download
    if model_is_local or not data_is_local(cfg):
        tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
        task = load_run_task(cfg)
    else:  # a hub model: the local data's errors first
        task = load_run_task(cfg)
        tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    check_tokenizer_numbers(tokenizer, model_file(cfg.model, "tokenizer_config.json"))
    rows = task.splits["train"]
    if len(rows) < 2:
        raise UserError("the training split has fewer than 2 rows: give more training data")
    check_full_batch(cfg, len(rows))  # before the model loads
    pairs = any(e.text_pair is not None for e in rows)
    encoder_config = load_encoder_config(cfg.model, cfg.trust_remote_code)
    check_pooler(encoder_config, cfg.pooling)
    check_max_length(cfg.max_length, cfg.model, tokenizer, encoder_config, pairs)
    request_segment_ids(tokenizer, encoder_config)
    encoded = {
        name: encode(examples, tokenizer, cfg.max_length, task.regression)
        for name, examples in task.splits.items()
    }
    for name, split in encoded.items():
        check_tokens(name, task.splits[name], split, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return RunData(task, tokenizer, encoded, pad_id)


def data_is_local(cfg: TrainConfig) -> bool:
    """Whether the run's data is read from this machine (files, --data-dir, a packaged task)
    rather than from the datasets hub (a GLUE task without --data-dir)."""
    from isobn.tasks import GLUE_TASKS, task_key

    if cfg.train_file or cfg.data_dir is not None:
        return True
    return task_key(cfg.task or DEFAULT_TASK) not in GLUE_TASKS


def check_full_batch(cfg: TrainConfig, examples: int) -> None:
    """With --drop-last, a UserError when the training split fills no batch."""
    if cfg.drop_last and examples < cfg.batch_size:
        raise UserError(
            f"--drop-last leaves no training batch: {examples} training examples, fewer "
            f"than --batch-size {cfg.batch_size}; lower --batch-size or drop --drop-last"
        )


def build_classifier(cfg: TrainConfig, task, device: torch.device) -> SequenceClassifier:
    """The pre-trained encoder with a new head and the run's method, on `device`."""
    config = ModelConfig(
        encoder=cfg.model,
        num_labels=task.num_labels,
        regression=task.regression,
        label_names=list(task.label_names),
        pooling=cfg.pooling,
        method=cfg.method,
        dropout=cfg.dropout,
        peft=cfg.peft,
        text_column=task.input_columns[0],
        text_pair_column=task.input_columns[1],
        max_length=cfg.max_length,
    )
    model = build_model(config, cfg.trust_remote_code)
    pooler = getattr(model.encoder, "pooler", None)
    if cfg.pooling != "pooler" and isinstance(pooler, nn.Module):
        pooler.requires_grad_(False)  # unused: keeps DDP from waiting for its gradients
    return model.to(device)


def build_optimisation(cfg: TrainConfig, model, data: RunData, accelerator):
    """(AdamW with the linear warmup/decay schedule and the run's precision, micro-batches
    per epoch on each rank)."""
    from transformers import get_linear_schedule_with_warmup

    world = accelerator.num_processes
    lengths = data.encoded["train"].lengths
    check_full_batch(cfg, len(lengths))  # again: a study passes data loaded for other cells
    batches = length_grouped_batches(lengths, cfg.batch_size, cfg.seed, 0, drop_last=cfg.drop_last)
    micro_per_rank = len(batches) // world  # the same every epoch, and on resume
    if micro_per_rank == 0:
        raise UserError(f"fewer training batches ({len(batches)}) than processes ({world})")
    total_steps = math.ceil(micro_per_rank / cfg.grad_accum) * cfg.epochs
    optimizer = adamw(model, cfg.learning_rate, cfg.weight_decay, cfg.adam_epsilon)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(cfg.warmup_ratio * total_steps), total_steps
    )
    precision = Precision(cfg.precision, accelerator.device.type)
    opt = Optimisation(
        optimizer, scheduler, precision, cfg.max_grad_norm, cfg.grad_accum, accelerator
    )
    return opt, micro_per_rank


def require_for_run(cfg: TrainConfig) -> None:
    """The packaged model and the task's package of a run, checked before any work: a
    one-line UserError naming both when both are missing (isobn.assets.require)."""
    from isobn.tasks import task_key

    require(cfg.model, [] if cfg.train_file else [task_key(cfg.task or DEFAULT_TASK)])
