"""Writing a training run's directory (isobn.training.runs reads it):

    config.json     the TrainConfig (rebuilds the run; flat, see isobn.training.config)
    log.jsonl       one line per logging step (loss, lr) and per evaluation (dev metrics,
                    isotropy of the dev pooled embedding before and after the norm)
    best/           best checkpoint on the task's main dev metric
                    (isobn.training.model.save_checkpoint)
    last/           training state for --resume: weights, optimizer, scheduler, RNG, TrainState;
                    removed when the run finishes unless --keep-last (about 3x best/)
    metrics.json    written when the run finishes (its presence marks a finished run)

A finished run is never overwritten, an interrupted one only continued (--resume) with the
settings it was started with; checkpoints are swapped in atomically (isobn.training.checkpoint).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from isobn import json_text
from isobn.errors import UserError, first_line
from isobn.training import checkpoint as ckpt
from isobn.training.config import TrainConfig
from isobn.training.fingerprint import check_same_inputs
from isobn.training.runs import CONFIG_FILE, LOG_FILE, METRICS_FILE
from isobn.training.safe_files import append_line, write_atomically, write_json_atomically

logger = logging.getLogger(__name__)
STATE_FILE = "trainer_state.json"
SCHEDULER_FILE = "scheduler.json"
WEIGHTS_FILE = "model.safetensors"

__all__ = [
    "LOG_FILE",
    "RunLog",
    "finished_result",
    "load_training_state",
    "remove_resume_point",
    "resume_point",
    "save_best",
    "save_training_state",
    "write_config",
]


def finished_result(cfg: TrainConfig, out: Path) -> dict | None:
    """metrics.json of a finished run in `out` when --resume asks for it and the run had the
    same settings; None when the run is not finished. A fresh run into a finished one is
    refused (it would replace its files), and so is --resume with other settings or a run
    whose settings are unknown: its result is not the one asked for."""
    if not (out / METRICS_FILE).is_file():
        return None
    if not cfg.resume:
        raise UserError(
            f"{out} holds a finished run (metrics.json): choose another --out, "
            "or pass --resume to reuse its result"
        )
    try:
        changed = saved_settings_changes(cfg, out)
        result = ckpt.read_json(out / METRICS_FILE)
    except ckpt.DamagedFileError as error:
        raise UserError(
            f"{error}: the finished run's result is unusable; choose another --out"
        ) from None
    if changed:
        raise UserError(
            f"{out} holds a finished run with other settings ({'; '.join(changed)}): "
            "repeat its arguments to reuse its result, or choose another --out"
        )
    check_same_inputs(
        saved_fingerprints(out),
        cfg,
        f"the finished run in {out}",
        "choose another --out to train on the files as they are, or restore them",
    )
    return result


def resume_point(cfg: TrainConfig, out: Path) -> Path | None:
    """The training state an interrupted run in `out` continues from (with --resume), checked
    before any work starts; None for a fresh start. Without --resume an interrupted run is
    never overwritten; with it, the run's config.json must be readable and hold the same
    settings, and every file of last/ must read back (a damaged last/ falls back to an intact
    last.old, with a warning). Anything else is a one-line UserError naming the file."""
    last = out / "last"
    interrupted = ckpt.resolve_directory(last) is not None
    if not cfg.resume:
        if interrupted:
            raise UserError(
                f"{out} holds an interrupted run (last/): pass --resume to continue it, "
                "or choose another --out"
            )
        return None
    if not interrupted:
        return None
    check_saved_config(cfg, out)
    try:
        directory, note = ckpt.resolve_training_state(last)
    except ckpt.DamagedFileError as error:
        raise cannot_resume(error, out) from None
    if note:
        logger.warning("%s", note)
    return directory


def check_saved_config(cfg: TrainConfig, out: Path) -> None:
    """The interrupted run's config.json holds `cfg`'s settings (those that change what a
    run computes); a missing or damaged one refuses: the run's settings are unknown."""
    try:
        changed = saved_settings_changes(cfg, out)
    except ckpt.DamagedFileError as error:
        raise cannot_resume(error, out, "the settings of the interrupted run are unknown") from None
    if changed:
        raise UserError(
            f"--resume with settings that differ from the interrupted run ({'; '.join(changed)}): "
            "repeat its arguments, or choose another --out"
        )
    check_same_inputs(
        saved_fingerprints(out),
        cfg,
        f"cannot resume: the interrupted run in {out}",
        "choose another --out to start afresh on the files as they are, or restore them",
    )


def saved_fingerprints(out: Path) -> dict | None:
    """The input fingerprints of the run's config.json (None for a run of an earlier
    version, which recorded none)."""
    return ckpt.read_json(out / CONFIG_FILE).get("fingerprints")


def saved_settings_changes(cfg: TrainConfig, out: Path) -> list[str]:
    """TrainConfig.resume_changes of `cfg` against the run's config.json; DamagedFileError
    when that is missing, not JSON or not a config."""
    saved_file = out / CONFIG_FILE
    values = ckpt.read_json(saved_file)
    try:
        saved = TrainConfig.from_dict(values)
    except (TypeError, ValueError, UserError) as error:
        raise ckpt.DamagedFileError(saved_file, f"is damaged ({first_line(error)})") from None
    return cfg.resume_changes(saved)


def cannot_resume(error: ckpt.DamagedFileError, out: Path, why: str = "") -> UserError:
    """`cannot resume: FILE is damaged (...); delete OUT/last to start again, or choose
    another --out`."""
    copies = [d for d in (out / "last", out / "last.old") if d.exists()]
    where = " and ".join(str(d) for d in copies) or str(out / "last")
    why = f" ({why})" if why else ""
    return UserError(
        f"cannot resume: {error}{why}; delete {where} to start again, or choose another --out"
    )


def write_config(out: Path, cfg: TrainConfig) -> None:
    """config.json: the settings and the fingerprints of the input files
    (isobn.training.fingerprint)."""
    from dataclasses import asdict

    from isobn.training.fingerprint import input_fingerprints

    write_json_atomically(
        out / CONFIG_FILE, {**asdict(cfg), "fingerprints": input_fingerprints(cfg)}
    )


def _step(line: str) -> int | None:
    """The step of a log.jsonl line; None for a line that is not an entry (cut by a kill)."""
    try:
        entry = json_text.loads(line)
    except ValueError:
        return None
    step = entry.get("step", 0) if isinstance(entry, dict) else None
    return step if isinstance(step, int | float) and not isinstance(step, bool) else None


class RunLog:
    """Append-only log.jsonl; on resume, entries after the checkpoint's step are dropped."""

    def __init__(self, path: Path, enabled: bool, keep_until_step: int | None = None) -> None:
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        kept = []
        if keep_until_step is not None and self.path.is_file() and not self.path.is_symlink():
            kept = [
                line
                for line in self.path.read_text(errors="replace").splitlines()
                if _step(line) is not None and _step(line) <= keep_until_step
            ]
        write_atomically(self.path, "".join(line + "\n" for line in kept))  # a link: replaced

    def write(self, **entry) -> None:
        if self.enabled:
            append_line(self.path, json_text.dumps(entry))


def save_training_state(
    out: Path, model, optimizer, scheduler, state: dict, rng: list[dict]
) -> None:
    """last/: weights, optimizer, scheduler, the TrainState dict and every rank's RNG."""

    def write(tmp: Path) -> None:
        from safetensors.torch import save_file

        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / WEIGHTS_FILE))
        ckpt.save_optimizer(optimizer, tmp)
        (tmp / SCHEDULER_FILE).write_text(json_text.dumps(scheduler.state_dict()))
        (tmp / STATE_FILE).write_text(json_text.dumps(state))
        ckpt.save_rng(tmp, rng)

    ckpt.write_directory_atomically(out / "last", write)


def remove_resume_point(out: Path) -> None:
    """Remove last/ (and a last.old or last.tmp a kill left) of a finished run: metrics.json
    marks it finished, so --resume returns its result without them."""
    for name in ("last", "last.old", "last.tmp"):
        shutil.rmtree(out / name, ignore_errors=True)


def load_training_state(directory: Path, out: Path, model, optimizer, scheduler, rank: int) -> dict:
    """Restore what save_training_state wrote into `model`, `optimizer`, `scheduler` and this
    rank's generators; returns the saved TrainState dict. A file that reads back but does not
    fit (other shapes, other keys) is a one-line UserError naming it, as a damaged one is.
    When `directory` is last.old (last/ was damaged), the damaged last/ is removed."""
    try:
        state = _restore(directory, model, optimizer, scheduler, rank)
    except ckpt.DamagedFileError as error:
        raise cannot_resume(error, out) from None
    last = out / "last"
    if directory != last and last.is_dir():
        shutil.rmtree(last)  # damaged: the next resume point is written from last.old
    return state


def _restore(directory: Path, model, optimizer, scheduler, rank: int) -> dict:
    def fits(name: str, load) -> None:
        try:
            load()
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as error:
            raise ckpt.DamagedFileError(
                directory / name, f"does not fit this run ({first_line(error)})"
            ) from None

    weights = ckpt.read_tensors(directory / WEIGHTS_FILE)
    fits(WEIGHTS_FILE, lambda: model.load_state_dict(weights))
    fits(ckpt.OPTIMIZER_TENSORS, lambda: ckpt.load_optimizer(optimizer, directory))
    saved = ckpt.read_json(directory / SCHEDULER_FILE)
    if set(saved) != set(scheduler.state_dict()):
        raise ckpt.DamagedFileError(directory / SCHEDULER_FILE, "does not fit this run")
    fits(SCHEDULER_FILE, lambda: scheduler.load_state_dict(saved))
    fits(ckpt.RNG_FILE, lambda: ckpt.load_rng(directory, rank))
    return ckpt.read_json(directory / STATE_FILE)


def save_best(out: Path, model, tokenizer) -> None:
    """best/: the checkpoint of isobn.training.model.save_checkpoint, swapped in atomically."""
    from isobn.training.model import save_checkpoint

    ckpt.write_directory_atomically(
        out / "best", lambda tmp: save_checkpoint(model, tokenizer, tmp)
    )
