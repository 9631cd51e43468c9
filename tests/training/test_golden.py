"""Behaviour kept across refactors: the golden runs of tests/data/golden (recorded by
tests/golden_record.py with the code of commit 9dc70fc) give the same metrics, log and best
checkpoint tensors today, and a run directory interrupted by that code resumes to the same end.

Floats are compared to a relative 1e-4: on the machine that recorded them they are bit-identical,
while another CPU's kernels may round differently; a change of behaviour (data order, random
numbers, a loss term, the optimizer) moves them by far more.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import golden_setup
import pytest
import torch
from safetensors.torch import load_file

from isobn.training.config import method_of
from isobn.training.train import TrainConfig, train

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
# metrics.json keys that do not depend on the machine's speed or paths
STABLE_KEYS = ("task", "seed", "main_metric", "dev", "test", "best_epoch", "stopped_early")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[str, Path]:
    return golden_setup.write_inputs(tmp_path_factory.mktemp("golden"))


def close(got, expected, where: str = "") -> None:
    """Equal structure; floats within a relative 1e-4 (absolute 1e-7)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and set(got) == set(expected), where
        for key, value in expected.items():
            close(got[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for i, (a, b) in enumerate(zip(got, expected)):
            close(a, b, f"{where}[{i}]")
    elif isinstance(expected, float) and not isinstance(got, bool):
        assert got == pytest.approx(expected, rel=1e-4, abs=1e-7), where
    else:
        assert got == expected, where


def assert_same_run(out: Path, golden: Path) -> None:
    metrics = json.loads((out / "metrics.json").read_text())
    expected = json.loads((golden / "metrics.json").read_text())
    # recorded when every run on files was task "file"; today the data is named by its
    # training file (golden_setup's data/train.csv: "data")
    expected["task"] = {"file": "data"}.get(expected["task"], expected["task"])
    close({k: metrics.get(k) for k in STABLE_KEYS}, {k: expected.get(k) for k in STABLE_KEYS})
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    expected_log = [json.loads(line) for line in (golden / "log.jsonl").read_text().splitlines()]
    method = method_of(json.loads((out / "config.json").read_text()))
    for entry in log:  # labels of the isotropy added after the recording (not on resumed lines)
        if "transform" in entry:
            transform = "identity" if method == "none" else method
            assert (entry.pop("method"), entry.pop("transform")) == (method, transform)
    close(log, expected_log, "log")
    best = load_file(str(out / "best" / "model.safetensors"))
    expected_best = load_file(str(golden / "best.safetensors"))
    assert best.keys() == expected_best.keys()
    for name, tensor in expected_best.items():
        torch.testing.assert_close(best[name], tensor, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("method", ["none", "isobn"])
def test_golden_run(inputs, tmp_path, method):
    model, data = inputs
    out = tmp_path / method
    train(TrainConfig(**golden_setup.settings(model, data, out), method=method))
    assert_same_run(out, GOLDEN / method)


def test_run_interrupted_by_the_old_format_resumes(inputs, tmp_path):
    """config.json, trainer_state.json and isobn_model.json as commit 9dc70fc wrote them."""
    model, data = inputs
    out = tmp_path / "interrupted"
    shutil.copytree(GOLDEN / "interrupted", out)
    for path in out.rglob("*"):
        if path.suffix in (".json", ".jsonl"):
            text = path.read_text()
            for placeholder, value in (("{OUT}", out), ("{DATA}", data), ("{MODEL}", model)):
                text = text.replace(placeholder, str(value))
            path.write_text(text)
    settings = golden_setup.settings(model, data, out)
    train(TrainConfig(**settings, method="isobn", save_every_steps=1, resume=True))
    assert_same_run(out, GOLDEN / "isobn")
