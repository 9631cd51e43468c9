"""IsoBN with LoRA (task_type="SEQ_CLS") on every architecture attach supports, attached before
or after get_peft_model. Where peft wraps the head that IsoBN normalizes (RoBERTa-style heads:
a ModulesToSaveWrapper keeps the original head and a trainable copy), one IsoBN with one set of
statistics normalizes the head's input: none left stale in a copy. Its statistics travel with
the adapter, survive merge_and_unload, and fold into the merged head."""

from __future__ import annotations

import copy

import pytest
import torch
from test_fold import eval_logits, no_isobn_module, relative_error
from test_hf_architectures import encoded
from tiny_encoders import ARCHS, sequence_classifier

import isobn
from isobn.hf import find_isobn, fold, load_isobn
from isobn.layer import IsoBN

peft = pytest.importorskip("peft")

WRAPPED = ["roberta", "xlm-roberta", "camembert", "mpnet", "electra"]  # IsoBN's site is the head


QUERY_VALUE = {  # each architecture's attention query and value projections
    "deberta-v2": ["query_proj", "value_proj"],
    "deberta-v3": ["query_proj", "value_proj"],
    "modernbert": ["Wqkv"],
    "modernbert-mean": ["Wqkv"],
    "distilbert": ["q_lin", "v_lin"],
    "mpnet": ["q", "v"],
}


def lora(model, arch: str):
    """LoRA on the attention's query and value projections; the head is peft's trainable copy
    (modules_to_save, from task_type="SEQ_CLS")."""
    targets = QUERY_VALUE.get(arch, ["query", "value"])
    config = peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=targets)
    return peft.get_peft_model(model, config)


def trained(model, inputs: dict, steps: int = 3):
    """`model` after `steps` SGD steps on its trainable parameters (the adapter, the head)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.5)
    labels = torch.arange(len(inputs["input_ids"])) % model.config.num_labels
    model.train()
    for _ in range(steps):
        model(**inputs, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def with_lora_and_isobn(arch: str, order: str):
    """(a fresh copy of the base model, the trained PeftModel with IsoBN, its inputs)."""
    base = sequence_classifier(arch)
    fresh = copy.deepcopy(base)
    if order == "before":
        model = lora(isobn.attach(base), arch)
    else:
        model = isobn.attach(lora(base, arch))
    inputs = encoded(arch, n=8)
    return fresh, trained(model, inputs), inputs


def isobn_layers(model) -> list[IsoBN]:
    return [module for module in model.modules() if isinstance(module, IsoBN)]


CASES = [(arch, "before") for arch in ARCHS] + [(arch, "after") for arch in ["bert", *WRAPPED]]


@pytest.mark.parametrize(("arch", "order"), CASES)
def test_one_isobn_normalizes_the_head_input_and_travels_with_the_adapter(arch, order, tmp_path):
    fresh, model, inputs = with_lora_and_isobn(arch, order)
    layers = isobn_layers(model)
    assert len(layers) == 1 and layers[0] is find_isobn(model)  # no stale copy
    assert layers[0].num_batches_tracked.item() == 3
    expected = eval_logits(model, inputs)
    isobn.detach(copy.deepcopy(model))  # detach of a copy leaves the model as it was
    assert find_isobn(model) is layers[0]

    model.save_pretrained(tmp_path)
    assert (tmp_path / "isobn.safetensors").exists()
    reloaded = load_isobn(peft.PeftModel.from_pretrained(copy.deepcopy(fresh), tmp_path), tmp_path)
    assert len(isobn_layers(reloaded)) == 1
    assert relative_error(eval_logits(reloaded, inputs), expected) < 1e-6

    merged = copy.deepcopy(model).merge_and_unload()
    assert len(isobn_layers(merged)) == 1 and find_isobn(merged) is not None
    assert relative_error(eval_logits(merged, inputs), expected) < 1e-6

    folded = fold(model)
    assert no_isobn_module(folded)
    assert not any(type(m).__module__.startswith("peft.") for m in folded.modules())
    assert relative_error(eval_logits(folded, inputs), expected) < 1e-5


@pytest.mark.parametrize("arch", WRAPPED)
def test_isobn_sits_on_peft_s_wrapper_of_the_head(arch):
    """The wrapper hands its input to the original head (adapters disabled) or the trainable
    copy: IsoBN on the wrapper normalizes both, and neither head holds an IsoBN of its own."""
    _, model, inputs = with_lora_and_isobn(arch, "before")
    head = model.get_base_model().classifier
    assert type(head).__name__ == "ModulesToSaveWrapper" and find_isobn(model) is head.isobn
    copies = [head.original_module, *head.modules_to_save.values()]
    assert not any(isobn_layers(module) for module in copies)
    with model.disable_adapter():
        without_adapter = eval_logits(model, inputs)
    isobn.detach(model)
    with model.disable_adapter():
        assert not torch.allclose(eval_logits(model, inputs), without_adapter)


@pytest.mark.parametrize("arch", ["roberta", "mpnet"])
def test_isobn_export_of_an_adapter_directory_of_a_wrapped_head(arch, tmp_path):
    """`isobn export ADAPTER_DIR`: base + adapter + IsoBN (on peft's wrapper of the head),
    merged and folded into a plain model with the adapter's logits."""
    import transformers as T
    from tiny_encoders import tokenizer

    from isobn.cli.main import main

    base = sequence_classifier(arch)
    base.save_pretrained(tmp_path / "base")
    tokenizer(arch).save_pretrained(tmp_path / "base")
    inputs = encoded(arch, n=8)
    model = trained(
        isobn.attach(
            lora(T.AutoModelForSequenceClassification.from_pretrained(tmp_path / "base"), arch)
        ),
        inputs,
    )
    expected = eval_logits(model, inputs)
    model.save_pretrained(tmp_path / "adapter")
    assert main(["export", str(tmp_path / "adapter"), "--out", str(tmp_path / "out")]) == 0
    plain = T.AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert not any(type(m).__module__.startswith(("peft.", "isobn.")) for m in plain.modules())
    assert relative_error(eval_logits(plain, inputs), expected) < 1e-5
