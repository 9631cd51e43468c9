"""Writing a training run's directory (isobn.runs reads it):

    config.json     the TrainConfig (rebuilds the run; flat, see isobn.config)
    log.jsonl       one line per logging step (loss, lr) and per evaluation (dev metrics,
                    isotropy of the dev pooled embedding before and after the norm)
    best/           best checkpoint on the task's main dev metric (isobn.model.save_checkpoint)
    last/           training state for --resume: weights, optimizer, scheduler, RNG, TrainState
    metrics.json    written when the run finishes (its presence marks a finished run)

A finished run is never overwritten, an interrupted one only continued (--resume) with the
settings it was started with; checkpoints are swapped in atomically (isobn.checkpoint).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from isobn import checkpoint as ckpt
from isobn.config import TrainConfig
from isobn.errors import UserError
from isobn.runs import CONFIG_FILE, LOG_FILE, METRICS_FILE

logger = logging.getLogger(__name__)
STATE_FILE = "trainer_state.json"
SCHEDULER_FILE = "scheduler.json"
WEIGHTS_FILE = "model.safetensors"

__all__ = [
    "LOG_FILE",
    "RunLog",
    "check_resumable",
    "finished_result",
    "last_checkpoint",
    "load_training_state",
    "save_best",
    "save_training_state",
    "write_config",
]


def finished_result(cfg: TrainConfig, out: Path) -> dict | None:
    """metrics.json of a finished run in `out` when --resume asks for it; None when the run is
    not finished. A fresh run into a finished one is refused: it would replace its files."""
    if not (out / METRICS_FILE).is_file():
        return None
    if cfg.resume:
        logger.info("%s is finished already (metrics.json exists)", out)
        try:
            return ckpt.read_json(out / METRICS_FILE)
        except ckpt.DamagedFileError as error:
            raise UserError(
                f"{error}: the finished run's result is lost; choose another --out"
            ) from None
    raise UserError(
        f"{out} holds a finished run (metrics.json): choose another --out, "
        "or pass --resume to reuse its result"
    )


def check_resumable(cfg: TrainConfig, out: Path) -> None:
    """--resume continues the same run; without it an interrupted run is never overwritten."""
    interrupted = ckpt.resolve_directory(out / "last") is not None
    if not cfg.resume:
        if interrupted:
            raise UserError(
                f"{out} holds an interrupted run (last/): pass --resume to continue it, "
                "or choose another --out"
            )
        return
    saved_file = out / CONFIG_FILE
    if not interrupted or not saved_file.is_file():
        return
    try:
        saved = TrainConfig.from_dict(ckpt.read_json(saved_file))
    except (ckpt.DamagedFileError, TypeError) as error:
        raise UserError(
            f"cannot resume: {saved_file} is unreadable ({error}); delete {out} to start "
            "again, or choose another --out"
        ) from None
    changed = cfg.resume_changes(saved)
    if changed:
        raise UserError(
            f"--resume with settings that differ from the interrupted run ({'; '.join(changed)}): "
            "repeat its arguments, or choose another --out"
        )


def write_config(out: Path, cfg: TrainConfig) -> None:
    from dataclasses import asdict

    (out / CONFIG_FILE).write_text(json.dumps(asdict(cfg), indent=2))


class RunLog:
    """Append-only log.jsonl; on resume, entries after the checkpoint's step are dropped."""

    def __init__(self, path: Path, enabled: bool, keep_until_step: int | None = None) -> None:
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        if keep_until_step is None:
            self.path.write_text("")
        elif self.path.exists():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= keep_until_step
            ]
            self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, **entry) -> None:
        if self.enabled:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(entry) + "\n")


def last_checkpoint(out: Path) -> Path | None:
    """The intact training state to resume from (last/, or last.old after a kill during a
    swap or when last/ is damaged); None when there is none. One-line UserError when every
    copy is damaged."""
    try:
        directory, note = ckpt.resolve_training_state(out / "last")
    except ckpt.DamagedFileError as error:
        raise UserError(
            f"cannot resume: {error}; delete {out} to start again, or choose another --out"
        ) from None
    if note:
        logger.warning("%s", note)
    return directory


def save_training_state(
    out: Path, model, optimizer, scheduler, state: dict, rng: list[dict]
) -> None:
    """last/: weights, optimizer, scheduler, the TrainState dict and every rank's RNG."""

    def write(tmp: Path) -> None:
        from safetensors.torch import save_file

        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / WEIGHTS_FILE))
        ckpt.save_optimizer(optimizer, tmp)
        (tmp / SCHEDULER_FILE).write_text(json.dumps(scheduler.state_dict()))
        (tmp / STATE_FILE).write_text(json.dumps(state))
        ckpt.save_rng(tmp, rng)

    ckpt.write_directory_atomically(out / "last", write)


def load_training_state(directory: Path, model, optimizer, scheduler, rank: int) -> dict:
    """Restore what save_training_state wrote into `model`, `optimizer`, `scheduler` and this
    rank's generators; returns the saved TrainState dict."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    ckpt.load_optimizer(optimizer, directory)
    scheduler.load_state_dict(json.loads((directory / SCHEDULER_FILE).read_text()))
    ckpt.load_rng(directory, rank)
    return json.loads((directory / STATE_FILE).read_text())


def save_best(out: Path, model, tokenizer) -> None:
    """best/: the checkpoint of isobn.model.save_checkpoint, swapped in atomically."""
    from isobn.model import save_checkpoint

    ckpt.write_directory_atomically(
        out / "best", lambda tmp: save_checkpoint(model, tokenizer, tmp)
    )
