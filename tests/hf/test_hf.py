"""attach/detach on a tiny BERT in detail: config, validation, Trainer, sharded and IsoBN-only
checkpoints, pipeline. Every architecture: tests/hf/test_hf_architectures.py."""

import copy
import logging

import pytest
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertTokenizer,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    Trainer,
    TrainingArguments,
    pipeline,
)
from transformers.utils import logging as hf_logging

import isobn
from isobn.hf import find_isobn, from_pretrained, load_isobn, save_isobn

HIDDEN, VOCAB, LABELS = 32, 100, 3
TINY = dict(
    vocab_size=VOCAB,
    hidden_size=HIDDEN,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    num_labels=LABELS,
)


def tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(**TINY))


def tiny_distilbert() -> DistilBertForSequenceClassification:
    torch.manual_seed(0)
    config = DistilBertConfig(
        vocab_size=VOCAB, dim=HIDDEN, n_layers=2, n_heads=2, hidden_dim=64, num_labels=LABELS
    )
    return DistilBertForSequenceClassification(config)


def batch(b: int = 6, t: int = 7, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (b, t), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def logits(model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**inputs).logits


def test_attach_records_config_and_validates():
    model = isobn.attach(tiny_bert(), momentum=None, eps=1e-2)
    assert model.config.isobn == {
        "momentum": None,
        "beta": 0.5,
        "eps": 1e-2,
        "bias_correction": True,
        "use_correlation": True,
    }
    assert "isobn" in model.config.to_dict()
    with pytest.raises(ValueError, match="already attached"):
        isobn.attach(model)
    with pytest.raises(TypeError, match="unknown IsoBN arguments"):
        isobn.attach(tiny_bert(), momemtum=0.1)
    with pytest.raises(ValueError, match="supported architectures are .*BertForSequence"):
        isobn.attach(BertForTokenClassification(BertConfig(**TINY)))
    with pytest.raises(ValueError, match="no IsoBN is attached"):
        isobn.detach(tiny_bert())


def test_attach_follows_model_mode():
    model = tiny_bert().eval()
    assert not find_isobn(isobn.attach(model)).training
    assert find_isobn(isobn.attach(tiny_bert().train())).training


def test_deepcopy_keeps_its_own_layer():
    model = isobn.attach(tiny_bert())
    clone = copy.deepcopy(model).train()
    clone(**batch())
    assert find_isobn(clone).num_batches_tracked.item() == 1
    assert find_isobn(model).num_batches_tracked.item() == 0
    isobn.detach(clone)
    assert find_isobn(model) is not None


class TinyDataset(torch.utils.data.Dataset):
    """`n` random token sequences of length `t` with random labels (a generator of `seed`)."""

    def __init__(self, n: int = 24, seed: int = 3, vocab: int = VOCAB, t: int = 8) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(5, vocab, (n, t), generator=g)
        self.labels = torch.randint(0, LABELS, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = self.ids[i]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": self.labels[i]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny BERT with IsoBN trained for a few steps by an unchanged HF Trainer."""
    model = isobn.attach(tiny_bert(), momentum=0.1)
    args = TrainingArguments(
        output_dir=str(tmp_path_factory.mktemp("trainer")),
        per_device_train_batch_size=8,
        max_steps=4,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
    )
    result = Trainer(model=model, args=args, train_dataset=TinyDataset()).train()
    return model.eval(), result


def test_trainer_updates_isobn(trained):
    model, result = trained
    assert find_isobn(model).num_batches_tracked.item() == 4
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert find_isobn(model).running_cov.abs().sum() > 0


def test_save_pretrained_round_trip(trained, tmp_path, caplog):
    model, _ = trained
    model.save_pretrained(tmp_path)
    hf_logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING):
            loaded = from_pretrained(tmp_path)
    finally:
        hf_logging.disable_propagation()
    assert "UNEXPECTED" not in caplog.text  # IsoBN keys are expected, not reported
    assert "_keys_to_ignore_on_load_unexpected" not in vars(BertForSequenceClassification)
    assert loaded.config.isobn == model.config.isobn
    assert not loaded.training and not find_isobn(loaded).training
    for key, value in find_isobn(model).state_dict().items():
        assert torch.equal(find_isobn(loaded).state_dict()[key], value), key
    inputs = batch()
    assert torch.equal(logits(loaded, inputs), logits(model, inputs))
    isobn.detach(loaded).save_pretrained(tmp_path / "plain")
    with pytest.raises(ValueError, match="not saved with IsoBN"):
        from_pretrained(tmp_path / "plain")


def test_sharded_save_pretrained_round_trip(trained, tmp_path):
    model, _ = trained
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    loaded = from_pretrained(tmp_path)
    inputs = batch()
    assert torch.equal(logits(loaded, inputs), logits(model, inputs))
    assert find_isobn(loaded).num_batches_tracked.item() == 4


def test_save_isobn_load_isobn_round_trip(trained, tmp_path):
    model, _ = trained
    save_isobn(model, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"isobn.safetensors", "isobn_config.json"}
    base = isobn.detach(copy.deepcopy(model))  # the same weights, no IsoBN
    assert load_isobn(base, tmp_path) is base
    assert base.config.isobn == model.config.isobn
    inputs = batch()
    assert torch.equal(logits(base, inputs), logits(model, inputs))
    load_isobn(base, tmp_path)  # already attached with the same settings: reloads buffers
    with pytest.raises(ValueError, match="detach first"):
        load_isobn(isobn.attach(tiny_bert(), beta=1.0), tmp_path)
    with pytest.raises(ValueError, match="not DistilBert"):
        load_isobn(tiny_distilbert(), tmp_path)


@pytest.mark.parametrize("budget", [0, 100, 2000])
def test_save_isobn_on_a_full_disk_keeps_the_previous_save(budget, tmp_path):
    """A full disk in the middle of save_isobn raises and leaves the files of the previous save
    whole, with no temporary file beside them."""
    import errno

    from full_disk import fills_after, leftovers
    from safetensors import SafetensorError

    model = isobn.attach(tiny_bert(), beta=1.0).train()
    model(**batch())
    save_isobn(model, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    model(**batch(seed=2))  # other statistics to save
    with pytest.raises((OSError, SafetensorError)), fills_after(tmp_path, budget, errno.EDQUOT):
        save_isobn(model, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert leftovers(tmp_path) == []
    load_isobn(tiny_bert(), tmp_path)  # still loads


def test_text_classification_pipeline(trained, tmp_path):
    model, _ = trained
    words = [f"w{i}" for i in range(VOCAB - 5)]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizer(vocab_file=str(vocab))
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")
    out = classify(["w1 w2 w3", "w4 w5"])
    assert len(out) == 2 and all(0 <= o["score"] <= 1 for o in out)
    assert find_isobn(model).num_batches_tracked.item() == 4  # inference does not update
