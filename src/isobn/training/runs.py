"""Reading the directory of an ``isobn train`` run: config.json, metrics.json, log.jsonl.

One reader for the tables (isobn.training.report) and the training curves (isobn.analysis.figures):

    config.json     the TrainConfig the run was started with (required)
    metrics.json    written when the run finishes; absent while it is unfinished
    log.jsonl       one JSON object a line; evaluation lines carry a "dev" dict of metrics
                    (and "epoch", "isotropy": {"before_norm", "after_norm"} reports; newer
                    logs also "method" and "transform", which ``Run.transform`` gives for logs
                    of every version); a line cut by a kill is skipped
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from isobn import json_text
from isobn.errors import UserError

__all__ = [
    "CONFIG_FILE",
    "LOG_FILE",
    "METRICS_FILE",
    "Run",
    "finished_run_dirs",
    "read_json",
    "read_log",
    "read_metrics",
    "read_run",
]

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
LOG_FILE = "log.jsonl"
METRICS_KEYS = ("task", "seed", "main_metric")  # what the result tables group by (and method)


def read_json(path: Path) -> dict:
    """A JSON file of a run; one-line UserError when it is missing or not valid JSON."""
    path = Path(path)
    try:
        value = json_text.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} not found: pass directories written by `isobn train`") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON ({error.msg}, line {error.lineno})") from None
    except PermissionError:
        raise UserError(f"cannot read {path} (permission denied); check its permissions") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    if not isinstance(value, dict):
        raise UserError(
            f"{path} holds a JSON {type(value).__name__}, not an object: "
            "pass directories written by `isobn train`"
        )
    return value


def read_metrics(run_dir: Path) -> dict:
    """metrics.json of a finished run; a one-line UserError when it lacks a key the result
    tables need (METRICS_KEYS)."""
    path = Path(run_dir) / METRICS_FILE
    metrics = read_json(path)
    missing = [key for key in METRICS_KEYS if key not in metrics]
    if missing:
        raise UserError(
            f"{path} has no {', '.join(missing)}: not written by `isobn train`; "
            "remove it or rerun that run"
        )
    return metrics


def read_log(path: Path) -> list[dict]:
    """Every entry of a log.jsonl in order ([] when there is none); a line cut by a kill is
    skipped, the rest of the log is still usable."""
    path = Path(path)
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            entry = json_text.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


@dataclass
class Run:
    """What one run directory holds."""

    path: Path
    config: dict  # config.json
    metrics: dict | None  # metrics.json; None while the run is unfinished
    log: list[dict]  # log.jsonl entries, in order

    @property
    def task(self) -> str:
        """The name of the data the run trained on: its task, or for a run on files --name or
        the training file's name (isobn.training.config.data_name_of; metrics.json's "task")."""
        from isobn.training.config import data_name_of

        return data_name_of(self.config)

    @property
    def method(self) -> str:
        """The run's canonical method (none, isobn, isobn:beta=0.25, ...) from config.json, of
        any version."""
        from isobn.training.config import method_of

        return method_of(self.config)

    @property
    def transform(self) -> str:
        """The map from the pooled embedding to the classifier input that the log's isotropy
        "before_norm" / "after_norm" straddles: the norm part of the method's canonical spec,
        or "identity" without a norm (none, correg, istar), where the two are one embedding.
        Read from config.json, so logs of every version have it."""
        from isobn.methods import parse_method
        from isobn.training.config import method_of

        return parse_method(method_of(self.config)).transform

    @property
    def seed(self) -> int:
        return self.config.get("seed", 0)

    @property
    def main_metric(self) -> str | None:
        return (self.metrics or {}).get("main_metric")

    @property
    def evaluations(self) -> list[dict]:
        """The log's evaluation entries (those with a "dev" dict), in order."""
        return [e for e in self.log if isinstance(e.get("dev"), dict)]


def read_run(run_dir: Path) -> Run:
    """The run in ``run_dir``; config.json must exist, metrics.json and log.jsonl may not."""
    run_dir = Path(run_dir)
    config = read_json(run_dir / CONFIG_FILE)
    metrics_file = run_dir / METRICS_FILE
    metrics = read_json(metrics_file) if metrics_file.is_file() else None  # unfinished: None
    return Run(run_dir, config, metrics, read_log(run_dir / LOG_FILE))


def finished_run_dirs(directory: Path) -> list[Path]:
    """Run directories below ``directory`` (not itself) with a metrics.json, in the sorted
    order of their metrics.json paths."""
    directory = Path(directory)
    found = sorted(directory.rglob(METRICS_FILE))
    return [path.parent for path in found if path.parent != directory]
