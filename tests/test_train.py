"""End-to-end fine-tuning on a tiny random BERT: single sentences, pairs, regression."""

import json

import numpy as np
import pytest
import torch

from isobn.model import load_checkpoint
from isobn.train import TrainConfig, train


def quick_config(tmp_path, tiny_bert, files, **overrides) -> TrainConfig:
    values = dict(
        out=str(tmp_path / "run"),
        model=tiny_bert,
        pooling="cls",
        train_file=files["train"],
        dev_file=files["dev"],
        test_file=files.get("test"),
        epochs=2,
        batch_size=16,
        learning_rate=1e-3,
        max_length=32,
        log_every_steps=1,
        seed=3,
    )
    values.update(overrides)
    return TrainConfig(**values)


def test_single_sentence_run_writes_everything(tmp_path, tiny_bert, sentiment_files):
    cfg = quick_config(tmp_path, tiny_bert, sentiment_files, method="isobn")
    result = train(cfg)
    out = tmp_path / "run"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(result))
    for key in (
        "task",
        "model",
        "method",
        "seed",
        "main_metric",
        "dev",
        "test",
        "best_epoch",
        "train_seconds",
        "train_samples_per_second",
    ):
        assert key in saved
    assert saved["main_metric"] in saved["dev"] and saved["method"] == "isobn"
    assert 0.0 <= saved["dev"]["accuracy"] <= 1.0
    assert TrainConfig.from_dict(json.loads((out / "config.json").read_text())) == cfg
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    evaluations = [e for e in log if "dev" in e]
    assert len(evaluations) == 2 and any("loss" in e for e in log)
    iso = evaluations[-1]["isotropy"]
    assert set(iso) == {"before_norm", "after_norm"} and "isoscore" in iso["before_norm"]
    model, tokenizer = load_checkpoint(out / "best")
    assert model.norm.num_batches_tracked.item() > 0  # IsoBN buffers travel with the weights
    batch = tokenizer(["the movie was good"], return_tensors="pt")
    with torch.inference_mode():
        logits = model(batch["input_ids"], batch["attention_mask"]).logits
    assert logits.shape == (1, 2) and torch.isfinite(logits).all()


def test_the_signal_is_learned(tmp_path, tiny_bert, sentiment_files):
    cfg = quick_config(
        tmp_path, tiny_bert, sentiment_files, method="none", epochs=8, pooling="mean"
    )
    result = train(cfg)
    assert result["dev"]["accuracy"] >= 0.75


def test_sentence_pairs(tmp_path, tiny_bert, pair_files):
    cfg = quick_config(
        tmp_path,
        tiny_bert,
        pair_files,
        text_column="premise",
        text_pair_column="hypothesis",
        method="isobn-legacy",
        pooling="pooler",
    )
    result = train(cfg)
    assert "test" not in result
    assert np.isfinite(result["dev"]["accuracy"])


def test_regression(tmp_path, tiny_bert, regression_files):
    cfg = quick_config(
        tmp_path,
        tiny_bert,
        regression_files,
        label_column="score",
        regression=True,
        method="isobn",
        epochs=3,
        pooling="mean",
    )
    result = train(cfg)
    assert result["main_metric"] in result["dev"]
    assert {"pearson", "spearman"} <= set(result["dev"])
    model, _ = load_checkpoint(tmp_path / "run" / "best")
    assert model.classifier.out_features == 1


def test_same_seed_same_metrics(tmp_path, tiny_bert, sentiment_files):
    first = train(quick_config(tmp_path / "a", tiny_bert, sentiment_files, epochs=1))
    second = train(quick_config(tmp_path / "b", tiny_bert, sentiment_files, epochs=1))
    assert first["dev"] == second["dev"] and first["test"] == second["test"]


@pytest.mark.parametrize("method", ["batchnorm", "layernorm"])
def test_other_norms(tmp_path, tiny_bert, sentiment_files, method):
    result = train(quick_config(tmp_path, tiny_bert, sentiment_files, method=method, epochs=1))
    assert result["method"] == method and np.isfinite(result["dev"]["accuracy"])


def test_early_stopping_and_eval_every_steps(tmp_path, tiny_bert, sentiment_files):
    cfg = quick_config(
        tmp_path,
        tiny_bert,
        sentiment_files,
        epochs=5,
        eval_every_steps=2,
        patience=1,
        learning_rate=1e-7,
    )
    result = train(cfg)
    assert result["stopped_early"]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len([e for e in log if "dev" in e]) < 5 * 3


def test_interrupted_run_is_protected_and_resume_checks_settings(
    tmp_path, tiny_bert, sentiment_files
):
    from isobn.errors import UserError

    cfg = quick_config(tmp_path, tiny_bert, sentiment_files, epochs=1)
    first = train(cfg)
    (tmp_path / "run" / "metrics.json").unlink()  # as if killed after the last checkpoint
    with pytest.raises(UserError, match="interrupted run"):
        train(cfg)
    with pytest.raises(UserError, match="learning_rate 0.001 -> 0.01"):
        train(
            quick_config(
                tmp_path, tiny_bert, sentiment_files, epochs=1, resume=True, learning_rate=1e-2
            )
        )
    resumed = train(quick_config(tmp_path, tiny_bert, sentiment_files, epochs=1, resume=True))
    assert resumed["dev"] == first["dev"]


def test_two_precisions_in_one_process(tmp_path, tiny_bert, sentiment_files):
    for precision in ("bf16", "fp32"):
        result = train(
            quick_config(
                tmp_path / precision, tiny_bert, sentiment_files, epochs=1, precision=precision
            )
        )
        assert np.isfinite(result["dev"]["accuracy"])
