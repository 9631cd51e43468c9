"""IsoBN with peft (LoRA): attach to a PeftModel, the statistics travel with the adapter, and
merge_and_unload keeps them."""

import pytest
import torch
from test_hf import batch, logits, tiny_bert

import isobn
from isobn.hf import find_isobn, load_isobn

peft = pytest.importorskip("peft")


def lora(model):
    config = peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query"])
    return peft.get_peft_model(model, config)


def trained_peft_model():
    model = lora(tiny_bert())
    isobn.attach(model)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    for seed in range(3):
        inputs = batch(seed=seed)
        loss = model(**inputs, labels=torch.tensor([0, 1, 2, 0, 1, 2])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model


def test_attach_accepts_a_peft_model_and_trains():
    model = trained_peft_model()
    norm = find_isobn(model)
    assert norm is not None and norm.num_batches_tracked.item() == 3
    assert norm is find_isobn(model.get_base_model())
    assert model.get_base_model().config.isobn["beta"] == 0.5


def test_statistics_travel_with_the_adapter(tmp_path):
    model = trained_peft_model()
    inputs = batch(seed=9)
    expected = logits(model, inputs)
    model.save_pretrained(tmp_path)
    assert {"adapter_model.safetensors", "isobn.safetensors"} <= {
        p.name for p in tmp_path.iterdir()
    }
    without = peft.PeftModel.from_pretrained(tiny_bert(), tmp_path)
    assert not torch.allclose(logits(without, inputs), expected)  # what the issue saw
    reloaded = load_isobn(peft.PeftModel.from_pretrained(tiny_bert(), tmp_path), tmp_path)
    torch.testing.assert_close(logits(reloaded, inputs), expected)
    # the reloaded model saves its statistics again
    reloaded.save_pretrained(tmp_path / "again")
    assert (tmp_path / "again" / "isobn.safetensors").exists()


def test_merge_and_unload_keeps_isobn():
    model = trained_peft_model()
    inputs = batch(seed=10)
    expected = logits(model, inputs)
    merged = model.merge_and_unload()
    assert find_isobn(merged) is not None
    torch.testing.assert_close(logits(merged, inputs), expected)


def test_attach_to_a_merged_model(tmp_path):
    merged = lora(tiny_bert()).merge_and_unload()
    isobn.attach(merged)
    merged.train()(**batch())
    merged.save_pretrained(tmp_path)
    inputs = batch(seed=11)
    torch.testing.assert_close(
        logits(isobn.hf.from_pretrained(tmp_path), inputs), logits(merged, inputs)
    )


def test_detach_restores_the_adapter_save(tmp_path):
    model = lora(tiny_bert())
    isobn.attach(model)
    isobn.detach(model)
    assert find_isobn(model) is None and "save_pretrained" not in model.__dict__
    model.save_pretrained(tmp_path)
    assert not (tmp_path / "isobn.safetensors").exists()


def test_isobn_attached_before_the_wrapping_is_saved_with_the_adapter(tmp_path):
    """attach(base) then get_peft_model: the PeftModel's save_pretrained saves IsoBN's
    statistics from its creation on (once silently lost); attaching to the PeftModel as well
    keeps the trained layer; other settings are refused."""
    base = isobn.attach(tiny_bert())
    model = lora(base)
    norm = find_isobn(model)
    model.train()
    model(**batch(seed=1))
    inputs = batch(seed=11)
    expected = logits(model, inputs)
    model.save_pretrained(tmp_path / "before")
    reloaded = load_isobn(
        peft.PeftModel.from_pretrained(tiny_bert(), tmp_path / "before"), tmp_path / "before"
    )
    torch.testing.assert_close(logits(reloaded, inputs), expected)
    with pytest.raises(ValueError, match="already attached to the base model"):
        isobn.attach(model, beta=0.25)
    assert isobn.attach(model, "isobn:beta=0.5") is model
    assert find_isobn(model) is norm and norm.num_batches_tracked.item() == 1
    model.save_pretrained(tmp_path / "after")
    reloaded = load_isobn(
        peft.PeftModel.from_pretrained(tiny_bert(), tmp_path / "after"), tmp_path / "after"
    )
    torch.testing.assert_close(logits(reloaded, inputs), expected)
    with pytest.raises(ValueError, match="already attached"):  # once saved, a second attach
        isobn.attach(model)


def test_a_peft_model_loaded_around_a_model_with_isobn_saves_it_too(tmp_path):
    """PeftModel.from_pretrained(base with IsoBN attached, d): its save_pretrained writes
    IsoBN's files as well; a PeftModel of a model without IsoBN is left as peft made it."""
    model = trained_peft_model()
    model.save_pretrained(tmp_path / "a")
    again = peft.PeftModel.from_pretrained(isobn.attach(tiny_bert()), tmp_path / "a")
    again.save_pretrained(tmp_path / "b")
    assert (tmp_path / "b" / "isobn.safetensors").exists()
    plain = lora(tiny_bert())
    assert "save_pretrained" not in plain.__dict__
    plain.save_pretrained(tmp_path / "c")
    assert not (tmp_path / "c" / "isobn.safetensors").exists()
