"""Interruption and resume (a real SIGKILL), atomic checkpoint directories, and safe loading:
safetensors + JSON only, no pickle, no remote code unless asked, no paths from data files."""

from __future__ import annotations

import ast
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import sentiment_rows, write_csv
from safetensors.torch import load_file

from isobn.cli.main import build_parser, main
from isobn.cli.options import config_values
from isobn.training import checkpoint as ckpt
from isobn.training.train import TrainConfig

SRC = Path(__file__).resolve().parents[2] / "src" / "isobn"
KILL_AT_STEP = 6  # of 12: in the second epoch, after the first evaluation wrote best/
# labels that look like paths: they must only ever be data (names inside JSON files)
LABELS = {"pos": "../../escaped", "neg": "/tmp/isobn-absolute-label"}


# --------------------------------------------------------------------------------------------
# write_directory_atomically / resolve_directory


def write_files(**files: str):
    def write(tmp: Path) -> None:
        for name, text in files.items():
            (tmp / name).write_text(text)

    return write


def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path):
    target = tmp_path / "last"
    ckpt.write_directory_atomically(target, write_files(state="1"))

    def crash(tmp: Path) -> None:
        (tmp / "state").write_text("partial")
        raise RuntimeError("killed while writing")

    with pytest.raises(RuntimeError):
        ckpt.write_directory_atomically(target, crash)
    assert ckpt.resolve_directory(target) == target
    assert (target / "state").read_text() == "1"
    # the next write cleans the leftover temporary directory and swaps in the new state
    ckpt.write_directory_atomically(target, write_files(state="2"))
    assert (target / "state").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_leftover_old_directory_is_picked_up(tmp_path):
    target, old = tmp_path / "last", tmp_path / "last.old"
    assert ckpt.resolve_directory(target) is None
    # a kill between the two renames: the previous checkpoint sits at last.old only
    old.mkdir()
    (old / "state").write_text("1")
    (tmp_path / "last.tmp").mkdir()  # and a half-written new one
    assert ckpt.resolve_directory(target) == old
    ckpt.write_directory_atomically(target, write_files(state="2"))
    assert ckpt.resolve_directory(target) == target
    assert (target / "state").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_optimizer_and_rng_round_trip(tmp_path):
    param = torch.nn.Parameter(torch.randn(3, 2))
    optimizer = torch.optim.AdamW([param], lr=1e-2)
    param.grad = torch.randn(3, 2)
    optimizer.step()
    ckpt.save_optimizer(optimizer, tmp_path)
    fresh = torch.optim.AdamW([torch.nn.Parameter(param.detach().clone())], lr=1.0)
    ckpt.load_optimizer(fresh, tmp_path)
    saved, loaded = optimizer.state_dict(), fresh.state_dict()
    assert saved["param_groups"] == loaded["param_groups"]
    for key, value in saved["state"][0].items():
        assert torch.equal(value, loaded["state"][0][key])

    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    np.random.normal()
    ckpt.save_rng(tmp_path, [ckpt.rng_state()])
    expected = (torch.rand(4), np.random.rand(4), random.random(), random.gauss(0, 1))
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    ckpt.load_rng(tmp_path, rank=0)
    again = (torch.rand(4), np.random.rand(4), random.random(), random.gauss(0, 1))
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2:] == again[2:]


# --------------------------------------------------------------------------------------------
# A real run killed with SIGKILL, resumed, against an uninterrupted run


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("resume-data")
    rows = {}
    for split, n, seed in (("train", 32, 0), ("dev", 16, 1), ("test", 16, 2)):
        split_rows = [dict(r, label=LABELS[r["label"]]) for r in sentiment_rows(n, seed)]
        rows[split] = write_csv(d / f"{split}.csv", split_rows)
    return rows


def run_args(out: Path, model: str, data: dict[str, str]) -> list[str]:
    return [
        "train", "--out", str(out), "--model", model,
        "--train", data["train"], "--dev", data["dev"], "--test", data["test"],
        "--pooling", "mean", "--max-length", "16", "--epochs", "3", "--batch-size", "8",
        "--lr", "1e-3", "--seed", "5", "--save-every-steps", "1", "--log-every-steps", "3",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def reference_run(runs_root, tiny_bert, data) -> Path:
    """The uninterrupted run (in-process)."""
    out = runs_root / "reference"
    assert main(run_args(out, tiny_bert, data)) == 0
    return out


def kill_during_training(out: Path, argv: list[str]) -> int:
    """Start `isobn train`, SIGKILL it once last/ holds step >= KILL_AT_STEP; that step."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "isobn.cli.main", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    state_file = out / "last" / "trainer_state.json"
    deadline = time.monotonic() + 300
    try:
        while True:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the run did not reach the kill step in time"
            try:
                step = json.loads(state_file.read_text())["global_step"]
            except (FileNotFoundError, json.JSONDecodeError):  # not yet, or between renames
                step = -1
            if step >= KILL_AT_STEP:
                break
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    return step


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(
    reference_run, runs_root, tiny_bert, data, caplog
):
    out = runs_root / "killed"
    argv = run_args(out, tiny_bert, data)
    killed_at = kill_during_training(out, argv)
    assert not (out / "metrics.json").exists()
    assert ckpt.resolve_directory(out / "last") is not None

    caplog.set_level(logging.INFO, logger="isobn.training.train")
    assert main([*argv, "--resume"]) == 0
    resumed_from = [r.getMessage() for r in caplog.records if "resuming" in r.getMessage()]
    assert len(resumed_from) == 1 and f"step {killed_at}" in resumed_from[0], resumed_from

    expected = json.loads((reference_run / "metrics.json").read_text())
    got = json.loads((out / "metrics.json").read_text())
    assert got["dev"] == expected["dev"] and got["test"] == expected["test"]
    assert got["best_epoch"] == expected["best_epoch"]
    # every logged loss, learning rate and dev evaluation, before and after the kill
    assert (out / "log.jsonl").read_text() == (reference_run / "log.jsonl").read_text()
    # best weights, IsoBN running statistics and counter included, are bit-identical
    best, reference = (
        load_file(str(run / "best" / "model.safetensors")) for run in (out, reference_run)
    )
    assert {"norm.running_std", "norm.running_cov", "norm.num_batches_tracked"} <= set(best)
    assert best.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.equal(best[name], tensor), name


# --------------------------------------------------------------------------------------------
# Safe loading


PICKLE_OR_TORCH_SAVE = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")


def test_run_directory_holds_only_json_safetensors_and_tokenizer_text(reference_run):
    files = [p for p in reference_run.rglob("*") if p.is_file()]
    names = {str(p.relative_to(reference_run)) for p in files}
    expected = {"metrics.json", "config.json", "log.jsonl", "best/model.safetensors"}
    assert expected <= names
    assert not any(name.startswith("last") for name in names)  # removed once finished
    for path in files:
        # no .bin/.pt/.pkl: weights and state are safetensors, the rest JSON or tokenizer text
        assert path.suffix in {".json", ".jsonl", ".safetensors", ".txt"}, path
        assert not path.read_bytes()[:4].startswith(PICKLE_OR_TORCH_SAVE), path
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".jsonl":
            [json.loads(line) for line in path.read_text().splitlines()]


def test_data_files_decide_no_output_paths(reference_run, runs_root, data):
    # labels such as "../../escaped" are names inside JSON, never parts of a path
    label_names = json.loads((reference_run / "best" / "isobn_model.json").read_text())
    assert sorted(label_names["label_names"]) == sorted(LABELS.values())
    outside = [p for p in runs_root.parent.rglob("*") if "escaped" in p.name]
    assert outside == [] and not Path("/tmp/isobn-absolute-label").exists()
    assert sorted(p.name for p in Path(data["train"]).parent.iterdir()) == [
        "dev.csv",
        "test.csv",
        "train.csv",
    ]
    for path in reference_run.rglob("*"):
        assert path.resolve().is_relative_to(reference_run.resolve())


def torch_load_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "load"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "torch"
        ):
            yield node


def test_no_unsafe_deserialisation_in_src():
    sources = sorted(SRC.rglob("*.py"))
    assert len(sources) > 10
    for path in sources:
        text = path.read_text()
        tree = ast.parse(text)
        for call in torch_load_calls(tree):
            weights_only = [k for k in call.keywords if k.arg == "weights_only"]
            assert weights_only and isinstance(weights_only[0].value, ast.Constant), (
                f"{path}:{call.lineno}: torch.load without weights_only=True"
            )
            assert weights_only[0].value.value is True, f"{path}:{call.lineno}"
        assert text.count("torch.load(") == len(list(torch_load_calls(tree))), path
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not {"pickle", "dill", "joblib", "cloudpickle"} & set(modules), path


def test_trust_remote_code_is_off_unless_asked(tmp_path, tiny_bert, data, monkeypatch, capsys):
    import transformers

    assert TrainConfig(out="x").trust_remote_code is False
    parser = build_parser()
    base = ["train", "--out", str(tmp_path / "out"), "--model", tiny_bert]
    assert config_values(parser.parse_args(base))["trust_remote_code"] is False
    assert config_values(parser.parse_args([*base, "--trust-remote-code"]))["trust_remote_code"]

    seen: list[tuple[str, object]] = []

    def spy(cls, stop: bool):
        original = cls.from_pretrained

        def from_pretrained(*args, **kwargs):
            seen.append((cls.__name__, kwargs.get("trust_remote_code")))
            if stop:  # every loader has been asked by now: end the run here
                raise OSError("stopped by the test")
            return original(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", from_pretrained)

    spy(transformers.AutoTokenizer, stop=False)
    spy(transformers.AutoConfig, stop=False)
    spy(transformers.AutoModel, stop=True)
    argv = [*base, "--train", data["train"], "--dev", data["dev"], "--max-length", "16"]
    for flag, expected in (([], False), (["--trust-remote-code"], True)):
        seen.clear()
        assert main([*argv, *flag]) == 2
        assert "stopped by the test" in capsys.readouterr().err
        assert {"AutoTokenizer", "AutoConfig", "AutoModel"} <= {name for name, _ in seen}
        assert {value for _, value in seen} == {expected}, seen
