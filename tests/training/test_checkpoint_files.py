"""Validated reading of checkpoint files: a damaged file is named, an intact .old is used."""

import json

import pytest
import torch
from safetensors.torch import save_file

from isobn.training import checkpoint as ckpt


def write_state(directory):
    directory.mkdir(parents=True)
    for name in ("model.safetensors", ckpt.OPTIMIZER_TENSORS, ckpt.RNG_FILE):
        save_file({"w": torch.arange(64.0)}, str(directory / name))
    (directory / ckpt.OPTIMIZER_GROUPS).write_text("[]")
    (directory / "scheduler.json").write_text("{}")
    (directory / "trainer_state.json").write_text(json.dumps({"epoch": 1}))
    return directory


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda d: truncate(d / "model.safetensors"), "model.safetensors is damaged"),
        (lambda d: (d / "model.safetensors").write_bytes(b""), "model.safetensors is damaged"),
        (lambda d: (d / ckpt.OPTIMIZER_TENSORS).unlink(), "optimizer.safetensors is missing"),
        (lambda d: truncate(d / "trainer_state.json"), "trainer_state.json is damaged (not JSON"),
        (lambda d: (d / "scheduler.json").write_text("[1]"), "scheduler.json is damaged (holds"),
        (lambda d: (d / ckpt.OPTIMIZER_GROUPS).write_text("{}"), "optimizer.json is damaged"),
    ],
)
def test_damaged_training_state_names_the_file(tmp_path, damage, problem):
    last = write_state(tmp_path / "last")
    ckpt.check_training_state(last)
    assert ckpt.resolve_training_state(last) == (last, None)
    damage(last)
    with pytest.raises(ckpt.DamagedFileError) as error:
        ckpt.resolve_training_state(last)
    assert problem in str(error.value) and "\n" not in str(error.value)
    # an intact copy from an interrupted swap is used instead, with a note
    old = write_state(tmp_path / "last.old")
    directory, note = ckpt.resolve_training_state(last)
    assert directory == old and "resuming from the intact copy" in note and problem in note


def test_no_training_state(tmp_path):
    assert ckpt.resolve_training_state(tmp_path / "last") == (None, None)


def test_read_tensors_round_trip(tmp_path):
    save_file({"a": torch.ones(3)}, str(tmp_path / "x.safetensors"))
    assert torch.equal(ckpt.read_tensors(tmp_path / "x.safetensors")["a"], torch.ones(3))
