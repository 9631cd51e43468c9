"""Fine-tuning with early stopping, checkpoints and resume, on the CPU, one GPU or several.

`train(cfg)` is the recipe; the steps it names are the functions below it:

    make_accelerator     the device and the processes, trackers      (isobn.training.build)
    load_data            tokenizer, task, the splits tokenised once  (isobn.training.build)
    build_classifier     encoder + pooling + method + head           (isobn.training.build)
    build_optimisation   AdamW, the schedule, the precision          (isobn.training.build)
    start                accelerate's prepare; resume from last/ or write config.json
    train_epoch          micro-batches through `training_step`, log lines, mid-epoch points
    evaluate_and_keep    dev metrics and isotropy; best/ when the main metric improves
    final_metrics        test metrics with the best weights; metrics.json

`TrainState` is where a run is (saved in last/ with the weights); `training_step` is one
micro-batch: forward, task loss plus the method's regularisers, backward, and at an
accumulation boundary the optimizer step. The run directory's files: isobn.training.run_dir.

No step reads the device: the losses are summed there (isobn.training.running_losses) and read,
with the check that they are finite, at log lines, evaluations and checkpoint writes; the
weights are checked to be finite before every evaluation and checkpoint write.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from isobn.errors import UserError
from isobn.training import checkpoint as ckpt
from isobn.training import run_dir, safe_files
from isobn.training.build import (
    RunData,
    build_classifier,
    build_optimisation,
    load_data,
    make_accelerator,
    require_for_run,
)
from isobn.training.compiled import compile_for_training, compile_limits, uncompiled
from isobn.training.config import TrainConfig, load_run_task
from isobn.training.data import collate, length_grouped_batches
from isobn.training.evaluation import (
    EvalSettings,
    TestView,
    describe_isotropy,
    evaluate,
    set_references,
    transform_labels,
)
from isobn.training.model import SequenceClassifier
from isobn.training.optim import Optimisation, compute_loss, parameter_groups
from isobn.training.running_losses import RunningLosses
from isobn.training.state import TrainState

__all__ = [
    "NonFiniteLossError",
    "TrainConfig",
    "TrainState",
    "compute_loss",
    "load_run_task",
    "parameter_groups",
    "train",
    "training_step",
]

logger = logging.getLogger(__name__)


class NonFiniteLossError(UserError, FloatingPointError):
    """The loss became NaN or infinite: a one-line CLI error (a UserError) naming the fix."""


@dataclass
class Run:
    """A run in progress: what the steps of the recipe share."""

    cfg: TrainConfig
    out: Path
    accelerator: Any
    data: RunData
    # as prepared by accelerate (DDP-wrapped on several processes), compiled with --compile
    model: nn.Module
    opt: Optimisation
    micro_per_rank: int  # micro-batches per epoch on each rank
    state: TrainState = field(default_factory=TrainState)
    log: run_dir.RunLog | None = None
    started: float = 0.0  # perf_counter() at which train_seconds would be 0
    losses: RunningLosses | None = None  # on the device since the last read

    @property
    def raw_model(self) -> SequenceClassifier:
        return self.accelerator.unwrap_model(uncompiled(self.model))

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def eval_settings(self) -> EvalSettings:
        return EvalSettings(
            self.cfg.eval_batch_size,
            self.data.pad_id,
            self.accelerator,
            self.opt.precision,
            self.cfg.isotropy_examples,
        )


def train(cfg: TrainConfig, data: RunData | None = None) -> dict:
    """Fine-tune, evaluating on dev and keeping the best checkpoint; returns metrics.json.

    `data` is `load_data(cfg)` made earlier (a study reuses it across the cells of one task,
    size and model); by default it is loaded here."""
    from accelerate.utils import set_seed

    cfg.validate()
    require_for_run(cfg)
    out = Path(cfg.out)
    finished = run_dir.finished_result(cfg, out)
    if finished is not None:
        logger.info("%s is finished already (metrics.json exists)", out)
        return finished
    last = run_dir.resume_point(cfg, out)  # checked before any work starts
    ckpt.check_writable_directory(out)  # created below, once the inputs are known to be good
    accelerator = make_accelerator(cfg)
    data = data if data is not None else load_data(cfg)
    set_seed(cfg.seed)  # before the head is initialised
    model = build_classifier(cfg, data.task, accelerator.device)
    opt, micro_per_rank = build_optimisation(cfg, model, data, accelerator)
    ckpt.ensure_writable_directory(out)
    run = start(cfg, out, accelerator, data, model, opt, micro_per_rank, last)
    if cfg.compile:
        run.model = compile_for_training(run.model)
    try:
        with compile_limits(cfg.compile):
            train_epochs(run)
        result = final_metrics(run)
        if run.main and not cfg.keep_last:
            run_dir.remove_resume_point(out)  # finished: metrics.json marks it, best/ stays
        return result
    finally:
        if cfg.report_to != "none":
            accelerator.end_training()


def train_epochs(run: Run) -> None:
    """The epochs still to do: each trained, evaluated and saved to last/, until the last or
    until early stopping."""
    cfg, state, data = run.cfg, run.state, run.data
    run.model.train()
    run.started = time.perf_counter() - state.train_seconds
    stop = state.stopped_early
    while state.epoch < cfg.epochs and not stop:
        if state.micro_step == 0:  # mid-epoch, the references are in the resumed weights
            set_references(
                run.raw_model,
                data.encoded["train"],
                cfg.isotropy_examples,
                run.eval_settings,
            )
        stop = train_epoch(run)
        if stop:
            state.stopped_early = True
            save_last(run)
            break
        state.epoch += 1
        state.micro_step = 0
        state.train_seconds = time.perf_counter() - run.started
        stop = evaluate_and_keep(run, state.epoch)
        state.stopped_early = stop
        save_last(run)


def start(
    cfg, out: Path, accelerator, data: RunData, model, opt, micro_per_rank, last: Path | None
) -> Run:
    """Prepare model and optimizer for the processes; resume from `last` (the training state
    of run_dir.resume_point) or start afresh with config.json; open log.jsonl."""
    model, opt.optimizer = accelerator.prepare(model, opt.optimizer)
    run = Run(cfg, out, accelerator, data, model, opt, micro_per_rank)
    run.losses = RunningLosses(accelerator.device)
    if last is not None:
        saved = run_dir.load_training_state(
            last,
            out,
            run.raw_model,
            opt.inner_optimizer(),
            opt.scheduler,
            accelerator.process_index,
        )
        try:
            run.state = TrainState.from_dict(saved)
        except ValueError as error:
            damaged = ckpt.DamagedFileError(last / run_dir.STATE_FILE, f"is damaged ({error})")
            raise run_dir.cannot_resume(damaged, out) from None
        if run.state.scaler and opt.precision.scaler is not None:
            opt.precision.scaler.load_state_dict(run.state.scaler)
        if run.main:
            logger.info(
                "resuming %s at epoch %d, step %d", out, run.state.epoch, run.state.global_step
            )
    elif run.main:
        run_dir.write_config(out, cfg)
    keep = run.state.global_step if last is not None else None
    run.log = run_dir.RunLog(out / run_dir.LOG_FILE, run.main, keep)
    return run


def training_step(
    model: nn.Module, batch: dict, opt: Optimisation, regression: bool = False, boundary=True
) -> dict[str, torch.Tensor]:
    """One micro-batch `batch` (input_ids, attention_mask, maybe token_type_ids, labels; on the
    model's device): forward under the precision's autocast; loss = the task loss plus the
    already weighted loss of every regulariser of the method on the pooled embedding;
    backward; when `boundary` (the last micro-batch of an accumulation), the optimizer step.

    Returns the detached scalar losses: "loss" (their sum) and, with regularisers, "task" and
    one per regulariser name. Nothing is read from the device, so nothing checks here that the
    loss is finite: the caller does, at its reads (`train` through RunningLosses). `model` may
    be wrapped (DDP); gradients are synchronised at boundaries only.
    """
    from contextlib import nullcontext

    raw = uncompiled(model)
    raw = opt.accelerator.unwrap_model(raw) if opt.accelerator is not None else raw
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    several = opt.accelerator is not None and opt.accelerator.num_processes > 1
    sync = nullcontext() if boundary or not several else opt.accelerator.no_sync(model)
    with sync:
        with opt.precision.autocast():
            output = model(**inputs)
            terms = {name: reg(output.pooled) for name, reg in _regularisers(raw)}
        terms = {"task": compute_loss(output.logits, batch["labels"], regression), **terms}
        loss = sum(terms.values())
        opt.backward(loss)
    if boundary:
        opt.step(model)
    losses = {"loss": loss.detach()}
    if len(terms) > 1:
        losses.update((name, term.detach()) for name, term in terms.items())
    return losses


def _regularisers(model) -> list[tuple[str, nn.Module]]:
    return list(zip(getattr(model, "regulariser_names", []), getattr(model, "regularisers", [])))


def train_epoch(run: Run) -> bool:
    """The rest of the current epoch; True when early stopping ended it (mid-epoch)."""
    from tqdm.auto import tqdm

    cfg, state, accelerator = run.cfg, run.state, run.accelerator
    epoch, world = state.epoch, accelerator.num_processes
    batches = length_grouped_batches(
        run.data.encoded["train"].lengths, cfg.batch_size, cfg.seed, epoch, drop_last=cfg.drop_last
    )
    mine = batches[: run.micro_per_rank * world][accelerator.process_index :: world]
    if state.micro_step == 0:
        state.running_loss, state.running_count, state.running_terms = 0.0, 0, {}
    with (
        tqdm(
            total=len(mine),
            initial=state.micro_step,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not run.main,
            leave=False,
            dynamic_ncols=True,
        ) as progress,
        _closed_on_error(progress),
    ):
        for micro in range(state.micro_step, len(mine)):
            tick = time.perf_counter()
            boundary = (micro + 1) % cfg.grad_accum == 0 or micro + 1 == len(mine)
            batch = collate(run.data.encoded["train"], mine[micro], run.data.pad_id)
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            losses = training_step(run.model, batch, run.opt, run.data.task.regression, boundary)
            run.losses.add(losses, state.global_step)
            state.samples += len(batch["labels"]) * world
            state.micro_step = micro + 1
            progress.update(1)
            state.global_step += boundary
            state.step_seconds += time.perf_counter() - tick
            if boundary and _after_step(run, (micro + 1) / len(mine), progress):
                return True
        read_losses(run)  # the epoch's last micro-batches are finite before its evaluation
    return False


@contextmanager
def _closed_on_error(progress):
    """Close the progress bar when a NonFiniteLossError leaves the loop: it clears the bar, so
    the error gets a line of its own."""
    try:
        yield
    except NonFiniteLossError:
        progress.close()
        raise


def read_losses(run: Run) -> None:
    """Add the losses summed on the device since the last read to the state's running sums
    (one host read); NonFiniteLossError naming the first non-finite loss among them."""
    state = run.state
    read = run.losses.read(run.accelerator.num_processes)
    if read.nonfinite_step is not None:
        raise NonFiniteLossError(
            f"non-finite loss {read.nonfinite_loss} at epoch {state.epoch} "
            f"step {read.nonfinite_step}: lower --lr or use --precision fp32"
        )
    state.running_count += read.count
    for name, value in read.sums.items():
        if name == "loss":
            state.running_loss += value
        else:
            state.running_terms[name] = state.running_terms.get(name, 0.0) + value


def check_finite_weights(run: Run) -> None:
    """NonFiniteLossError when a parameter holds NaN or inf (a finite loss can still have a
    non-finite gradient): before every evaluation and checkpoint write, one host read."""
    params = [p.detach() for p in run.raw_model.parameters()]
    largest = torch.stack([torch.linalg.vector_norm(p, math.inf) for p in params])
    if not bool(torch.isfinite(largest).all()):
        state = run.state
        raise NonFiniteLossError(
            f"non-finite weights at epoch {state.epoch} step {state.global_step}: "
            "lower --lr or use --precision fp32"
        )


def _checked(run: Run) -> None:
    """The reads before an evaluation or a checkpoint write: losses, then weights."""
    read_losses(run)
    check_finite_weights(run)


def _after_step(run: Run, done: float, progress) -> bool:
    """The log line, evaluation or resume point due after an optimizer step; `done` is the
    share of the epoch done. True when early stopping says stop."""
    cfg, state = run.cfg, run.state
    step, epoch = state.global_step, state.epoch
    if step % cfg.log_every_steps == 0:
        read_losses(run)
        count = max(state.running_count, 1)
        entry = {"loss": state.running_loss / count, "lr": run.opt.scheduler.get_last_lr()[0]}
        if state.running_terms:
            entry["losses"] = {k: v / count for k, v in state.running_terms.items()}
        run.log.write(step=step, epoch=epoch + done, **entry)
        _track(run, {"train": entry})
        progress.set_postfix(loss=f"{entry['loss']:.4f}")
        state.running_loss, state.running_count, state.running_terms = 0.0, 0, {}
    if done == 1:  # the epoch's end: evaluated and saved by the recipe
        return False
    if cfg.eval_every_steps and step % cfg.eval_every_steps == 0:
        state.train_seconds = time.perf_counter() - run.started
        stop = evaluate_and_keep(run, round(epoch + done, 3))
        save_last(run)
        return stop
    if cfg.save_every_steps and step % cfg.save_every_steps == 0:
        state.train_seconds = time.perf_counter() - run.started
        save_last(run)
    return False


def evaluate_and_keep(run: Run, epoch_label: float) -> bool:
    """Evaluate on dev; write best/ when the main metric improves. True when early stopping
    (--patience evaluations without improvement) says stop."""
    state, task = run.state, run.data.task
    _checked(run)
    first = state.best_epoch is None  # the run's first evaluation: check its embedding once
    metrics, iso = evaluate(
        run.raw_model,
        task,
        run.data.encoded,
        task.dev_splits,
        run.eval_settings,
        warn_constant=first and run.main,
    )
    run.raw_model.train()
    score = metrics[task.main_metric]
    improved = state.best_metric is None or score > state.best_metric
    if improved:
        state.best_metric, state.best_epoch, state.best_dev = score, epoch_label, metrics
        state.evals_without_improvement = 0
        if run.main:
            run_dir.save_best(run.out, run.raw_model, run.data.tokenizer)
    else:
        state.evals_without_improvement += 1
    labels = transform_labels(run.raw_model) if iso else {}  # what the isotropy is of
    run.log.write(step=state.global_step, epoch=epoch_label, dev=metrics, **labels, isotropy=iso)
    _track(run, {"dev": metrics, "isotropy": iso})
    if run.main:
        logger.info(
            "epoch %s step %d: dev %s = %.4f%s",
            epoch_label,
            state.global_step,
            task.main_metric,
            score,
            " (best)" if improved else "",
        )
        if iso:
            logger.info("%s", describe_isotropy(labels, iso))
    patience = run.cfg.patience
    return patience is not None and state.evals_without_improvement >= patience


def save_last(run: Run) -> None:
    """last/: the resume point (every rank's generators are gathered to the main process)."""
    from accelerate.utils import gather_object

    _checked(run)
    rng = [ckpt.rng_state()]
    if run.accelerator.num_processes > 1:
        rng = gather_object(rng)
    if not run.main:
        return
    scaler = run.opt.precision.scaler
    run.state.scaler = scaler.state_dict() if scaler is not None else None
    run_dir.save_training_state(
        run.out,
        run.raw_model,
        run.opt.inner_optimizer(),
        run.opt.scheduler,
        asdict(run.state),
        rng,
    )


def final_metrics(run: Run) -> dict:
    """metrics.json: the best dev metrics, test metrics of the best weights, speed."""
    cfg, state, task = run.cfg, run.state, run.data.task
    result = {
        "task": cfg.data_name,  # a task on files: --name or the training file's name
        "model": cfg.model,
        "method": cfg.method,
        "seed": cfg.seed,
        "main_metric": task.main_metric,
        "dev": state.best_dev,
        "best_epoch": state.best_epoch,
        "train_seconds": round(time.perf_counter() - run.started, 3),
        # samples / time in forward, backward and optimizer steps (evaluation excluded)
        "train_samples_per_second": round(state.samples / max(state.step_seconds, 1e-9), 3),
        "stopped_early": state.stopped_early,
        "world_size": run.accelerator.num_processes,
    }
    test_splits = [s for s in task.splits if s.startswith("test")]
    if test_splits:
        from safetensors.torch import load_file

        best = ckpt.resolve_directory(run.out / "best")
        run.accelerator.wait_for_everyone()
        run.raw_model.load_state_dict(load_file(str(best / run_dir.WEIGHTS_FILE)))
        view = TestView(task, test_splits)
        result["test"], _ = evaluate(
            run.raw_model, view, run.data.encoded, test_splits, run.eval_settings
        )
    if run.main:
        safe_files.write_json_atomically(run.out / run_dir.METRICS_FILE, result)
    run.accelerator.wait_for_everyone()
    return result


def _track(run: Run, values: dict) -> None:
    """Send values (nested dicts of numbers) to the --report-to trackers, keys joined by /."""
    if run.cfg.report_to == "none":
        return
    flat: dict[str, float] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}/{key}" if prefix else key, inner)
        elif isinstance(value, int | float):
            flat[prefix] = float(value)

    walk("", values)
    run.accelerator.log(flat, step=run.state.global_step)
