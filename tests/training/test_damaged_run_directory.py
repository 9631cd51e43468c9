"""--resume into a damaged run directory: every file is validated when read; a damaged last/
falls back to an intact last.old (saying so), otherwise one line names the damaged file and
the way out, and the directory is left as it was."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest
from conftest import quick_config
from safetensors.torch import save_file

from isobn.errors import UserError
from isobn.training.train import train


def snapshot(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def interrupted_copy(trained_run: Path, where: Path) -> Path:
    """The trained run as if killed before metrics.json was written."""
    out = where / "run"
    shutil.copytree(trained_run, out)
    (out / "metrics.json").unlink()
    return out


def resume_config(out: Path, tiny_bert, sentiment_files):
    # the settings conftest's trained_run was started with
    return quick_config(out, tiny_bert, sentiment_files, epochs=1, eval_every_steps=3, resume=True)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGES = {
    "truncated weights": (
        lambda out: truncate(out / "last" / "model.safetensors"),
        "last/model.safetensors is damaged",
    ),
    "truncated trainer state": (
        lambda out: (out / "last" / "trainer_state.json").write_text('{"epoch": '),
        "last/trainer_state.json is damaged (not JSON",
    ),
    "trainer state of the wrong type": (
        lambda out: (out / "last" / "trainer_state.json").write_text('{"epoch": "x"}'),
        "last/trainer_state.json is damaged (epoch is 'x', not int)",
    ),
    "missing optimizer": (
        lambda out: (out / "last" / "optimizer.safetensors").unlink(),
        "last/optimizer.safetensors is missing",
    ),
    "weights of another model": (
        lambda out: save_file({"w": __import__("torch").ones(2)}, out / "last/model.safetensors"),
        "last/model.safetensors does not fit this run",
    ),
    "scheduler of another kind": (
        lambda out: (out / "last" / "scheduler.json").write_text('{"x": 1}'),
        "last/scheduler.json does not fit this run",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_last_without_a_copy_is_one_line(
    damage, trained_run, tiny_bert, sentiment_files, tmp_path
):
    out = interrupted_copy(trained_run, tmp_path)
    apply, problem = DAMAGES[damage]
    apply(out)
    before = snapshot(out)
    with pytest.raises(UserError) as error:
        train(resume_config(out, tiny_bert, sentiment_files))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("cannot resume: ") and problem in message
    assert f"delete {out / 'last'} to start again, or choose another --out" in message
    assert snapshot(out) == before


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda out: (out / "config.json").write_text("{oops"), "config.json is damaged (not"),
        (lambda out: (out / "config.json").write_text("[1]"), "config.json is damaged (holds"),
        (lambda out: (out / "config.json").unlink(), "config.json is missing"),
        (
            lambda out: (out / "config.json").write_text(json.dumps({"method": "nope"})),
            "config.json is damaged (",
        ),
    ],
    ids=["not-json", "a-list", "missing", "unreadable-settings"],
)
def test_resume_without_the_runs_settings_refuses(
    damage, problem, trained_run, tiny_bert, sentiment_files, tmp_path
):
    """--resume never continues with whatever settings are given now."""
    out = interrupted_copy(trained_run, tmp_path)
    damage(out)
    before = snapshot(out)
    with pytest.raises(UserError) as error:
        train(resume_config(out, tiny_bert, sentiment_files))
    message = str(error.value)
    assert "\n" not in message and problem in message
    assert "the settings of the interrupted run are unknown" in message
    assert snapshot(out) == before


def test_damaged_last_falls_back_to_an_intact_copy(
    trained_run, tiny_bert, sentiment_files, tmp_path, caplog
):
    out = interrupted_copy(trained_run, tmp_path)
    shutil.copytree(out / "last", out / "last.old")
    truncate(out / "last" / "model.safetensors")
    expected = json.loads((trained_run / "metrics.json").read_text())
    with caplog.at_level(logging.WARNING):
        result = train(resume_config(out, tiny_bert, sentiment_files))
    assert "last/model.safetensors is damaged" in caplog.text
    assert "resuming from the intact copy" in caplog.text
    assert result["dev"] == expected["dev"] and result["test"] == expected["test"]
    # the damaged copy is gone, the intact one is the resume point again
    assert not (out / "last").exists() or not (out / "last.old").exists()


def test_deleting_a_damaged_last_starts_again(trained_run, tiny_bert, sentiment_files, tmp_path):
    """The way out the message gives works."""
    out = interrupted_copy(trained_run, tmp_path)
    truncate(out / "last" / "model.safetensors")
    cfg = resume_config(out, tiny_bert, sentiment_files)
    with pytest.raises(UserError, match="delete"):
        train(cfg)
    shutil.rmtree(out / "last")
    assert train(cfg)["dev"] == json.loads((trained_run / "metrics.json").read_text())["dev"]


def test_a_log_line_cut_by_a_kill_does_not_stop_resume(
    trained_run, tiny_bert, sentiment_files, tmp_path
):
    out = interrupted_copy(trained_run, tmp_path)
    with open(out / "log.jsonl", "a") as handle:
        handle.write('{"step": 99, "lo')
    train(resume_config(out, tiny_bert, sentiment_files))
    lines = (out / "log.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["step"] <= 6 for line in lines)
