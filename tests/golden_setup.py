"""Inputs of the golden runs (tests/training/test_golden.py, tests/golden_record.py): a tiny random
BERT
and small sentiment files, both rebuilt deterministically, and the run's settings."""

from __future__ import annotations

from pathlib import Path

from conftest import sentiment_rows, write_csv, write_tiny_bert


def write_inputs(root: Path) -> tuple[str, Path]:
    """(model directory, data directory) under `root`."""
    model = str(write_tiny_bert(root / "tiny-bert-16", hidden=16, seed=0))
    data = root / "data"
    data.mkdir()
    for split, n, seed in (("train", 96, 0), ("dev", 16, 1), ("test", 16, 2)):
        write_csv(data / f"{split}.csv", sentiment_rows(n, seed))
    return model, data


def settings(model: str, data: Path, out: Path) -> dict:
    """TrainConfig fields of the golden runs (the method is added by the caller): 3 epochs of
    6 steps, evaluations at steps 4, 6, 8, 12, 16 and 18, a test split, every step logged.
    The dev accuracy moves from 0.875 to 0.9375 and back, so the best checkpoint matters."""
    return dict(
        out=str(out),
        model=model,
        train_file=str(data / "train.csv"),
        dev_file=str(data / "dev.csv"),
        test_file=str(data / "test.csv"),
        pooling="mean",
        epochs=3,
        batch_size=16,
        max_length=16,
        learning_rate=2e-3,
        eval_every_steps=4,
        log_every_steps=1,
        seed=7,
        cpu=True,
    )
