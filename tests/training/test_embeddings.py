"""The one inference loop: rows in the split's order, kept rows, sharding over ranks."""

from contextlib import nullcontext
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from isobn.tasks import Example
from isobn.training.data import collate, encode
from isobn.training.embeddings import hidden_size, infer, predict
from isobn.training.model import ModelConfig, build_model
from isobn.training.pretrained import load_tokenizer

TEXTS = ["good", "the movie was very dull", "a fine cast", "bad plot", "it is great", "superb"]


@pytest.fixture(scope="module")
def classifier(tiny_bert):
    torch.manual_seed(0)
    model = build_model(ModelConfig(encoder=tiny_bert, num_labels=3, pooling="cls", method="isobn"))
    tokenizer = load_tokenizer(tiny_bert)
    split = encode([Example(t, None, 0) for t in TEXTS * 3], tokenizer, 16, False)
    model.train()
    model(**{k: v for k, v in collate(split, np.arange(len(split)), 0).items() if k != "labels"})
    return model.eval(), split


def one_by_one(model, split):
    """Each row alone (no padding): the reference for batched inference."""
    rows = []
    with torch.inference_mode():
        for i in range(len(split)):
            batch = collate(split, np.array([i]), 0)
            batch.pop("labels")
            out = model(**batch)
            rows.append([out.logits[0], out.pooled[0], out.normed[0]])
    return [torch.stack(column).numpy() for column in zip(*rows)]


def test_predict_matches_row_by_row(classifier):
    model, split = classifier
    logits, pooled, normed = one_by_one(model, split)
    result = predict(model, split, 4, 0, embeddings_for=5)
    assert set(result) == {"predictions", "logits", "pooled", "normed"}
    assert result["logits"].dtype == np.float32 and result["logits"].shape == (18, 3)
    np.testing.assert_allclose(result["logits"], logits, atol=1e-5)
    np.testing.assert_array_equal(result["predictions"], result["logits"].argmax(-1))
    assert result["pooled"].shape == (5, 32)
    np.testing.assert_allclose(result["pooled"], pooled[:5], atol=1e-5)
    np.testing.assert_allclose(result["normed"], normed[:5], atol=1e-5)
    assert not np.allclose(result["pooled"], result["normed"])
    assert set(predict(model, split, 7, 0)) == {"predictions", "logits"}  # no embeddings asked


def test_predict_regression_returns_the_single_output(tiny_bert):
    config = ModelConfig(encoder=tiny_bert, num_labels=1, regression=True, method="none")
    model = build_model(config)
    split = encode([Example(t, None, 0.0) for t in TEXTS], load_tokenizer(tiny_bert), 16, True)
    result = predict(model, split, 2, 0)
    assert result["predictions"].shape == (6,)
    np.testing.assert_array_equal(result["predictions"], result["logits"][:, 0])


class FakeAccelerator:
    """Rank `rank` of `world`: the attributes infer() reads."""

    def __init__(self, rank: int, world: int) -> None:
        self.process_index, self.num_processes, self.device = rank, world, torch.device("cpu")

    def autocast(self):
        return nullcontext()


def test_ranks_run_their_share_and_gather_every_row(classifier, monkeypatch):
    import accelerate.utils

    model, split = classifier
    single = predict(model, split, 4, 0, FakeAccelerator(0, 1), embeddings_for=7)
    shares = {}

    # rank 1 first: its rows are what rank 0 receives from the other process
    captured = {}

    def gather_rank1(rows):
        captured["rows"] = rows
        shares[1] = [indices.tolist() for indices, _ in rows]
        return rows

    monkeypatch.setattr(accelerate.utils, "gather_object", gather_rank1)
    predict(model, split, 4, 0, FakeAccelerator(1, 2), embeddings_for=7)

    def gather_rank0(rows):
        shares[0] = [indices.tolist() for indices, _ in rows]
        return rows + captured["rows"]

    monkeypatch.setattr(accelerate.utils, "gather_object", gather_rank0)
    sharded = predict(model, split, 4, 0, FakeAccelerator(0, 2), embeddings_for=7)
    assert len(shares[0]) == 3 and len(shares[1]) == 2  # 5 batches of 4: 0, 2, 4 and 1, 3
    assert sorted(i for batch in shares[0] + shares[1] for i in batch) == list(range(18))
    for key in ("logits", "pooled", "normed", "predictions"):
        np.testing.assert_array_equal(sharded[key], single[key])


def test_infer_keeps_first_rows_and_drops_zero(classifier):
    model, split = classifier

    def forward(batch):
        out = model(**batch)
        return {"a": out.pooled, "b": out.normed, "c": out.logits.half()}

    outputs = infer(forward, split, 5, 0, first_rows={"a": 4, "b": 0}, desc=None)
    assert set(outputs) == {"a", "c"}
    assert outputs["a"].shape == (4, 32) and outputs["c"].shape == (18, 3)
    assert outputs["c"].dtype == np.float32  # half-precision outputs come back as float32


def test_hidden_size_of_bert_and_distilbert_configs():
    assert hidden_size(SimpleNamespace(hidden_size=384)) == 384
    assert hidden_size(SimpleNamespace(dim=768)) == 768  # DistilBERT's name
