"""The isotropy of the study model's pre-trained pooled embedding, per task (isobn analyze)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from isobn import json_text
from isobn.study.spec import Study
from isobn.training.safe_files import make_folder, write_json_atomically

FILE = "pretrained_isotropy.json"
# task settings that `isobn analyze` takes, and their options
_OPTIONS = {
    "data_dir": "--data-dir",
    "train_file": "--train",
    "dev_file": "--dev",
    "test_file": "--test",
    "text_column": "--text-column",
    "text_pair_column": "--text-pair-column",
    "label_column": "--label-column",
    "max_length": "--max-length",
}


def ensure_pretrained_isotropy(study: Study, out: Path) -> Path:
    """Measure (once) the pre-trained model's pooled embedding over each task's dev split
    with `isobn analyze`, into OUT/pretrained/TASK; summary in OUT/pretrained_isotropy.json."""
    path = out / FILE
    summary = _summary(path)
    pooling = study.train.get("pooling", "pooler")
    summary.update(model=study.model, pooling=pooling)
    tasks = sorted({task for block in study.blocks for task in block.tasks})
    if set(tasks) - set(summary["tasks"]):
        from isobn.training.pretrained import resolve_model_path

        resolve_model_path(study.model)  # one line, before a folder is made
    for task in tasks:
        if task in summary["tasks"]:
            continue
        directory = make_folder(out, Path("pretrained", task))  # never through a planted link
        summary["tasks"][task] = _analyze(study, task, pooling, directory, out)
        write_json_atomically(path, summary)
    return path


def _summary(path: Path) -> dict:
    """The summary written so far; a fresh one when there is none, or what is there is not
    a summary isobn wrote (a link, a damaged file): it is measured again."""
    from isobn.training import checkpoint as ckpt

    if path.is_symlink():
        return {"tasks": {}}
    try:
        summary = ckpt.read_json(path)
    except ckpt.DamagedFileError:
        return {"tasks": {}}
    return summary if isinstance(summary.get("tasks"), dict) else {"tasks": {}}


def _analyze(study: Study, task: str, pooling: str, directory: Path, out: Path) -> dict:
    settings = {**study.train, **study.tasks.get(task, {})}
    command = [
        sys.executable,
        "-m",
        "isobn.cli.main",
        "analyze",
        "--model",
        study.model,
        "--pooling",
        pooling,
        "--split",
        "dev",
        "--out",
        str(directory),
    ]
    if not settings.get("train_file"):
        command += ["--task", task]
    for key, option in _OPTIONS.items():
        if settings.get(key) is not None:
            command += [option, str(settings[key])]
    if settings.get("regression"):
        command.append("--regression")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        from isobn.errors import UserError

        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"the pre-trained isotropy of {task} failed: {last}")
    payload = json_text.loads((directory / "isotropy.json").read_text())
    _name_relative(payload, directory, out)
    return payload["models"][0]["reports"][pooling]


def _name_relative(payload: dict, directory: Path, out: Path) -> None:
    """isotropy.json names its folder relative to the study directory (pretrained/TASK), as
    cell records name theirs: no machine path in results that are copied or committed."""
    payload["config"]["out"] = directory.relative_to(out).as_posix()
    write_json_atomically(directory / "isotropy.json", payload)
