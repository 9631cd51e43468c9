"""isobn.hf.fold: IsoBN folded into the head's first linear layer, for every architecture attach
supports; the folded model has the attached model's eval logits, no isobn module, and reloads
with plain transformers. The norms of `isobn train` (whitening, BatchNorm) fold the same way;
LayerNorm and a non-linear head are refused."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import transformers as T
from test_hf_architectures import FOUND, encoded, general, ids
from tiny_encoders import ARCHS, sequence_classifier
from torch import nn

import isobn
from isobn.hf import NotFoldable, fold
from isobn.hf.fold import eval_affine, fold_into_linear
from isobn.methods import Whitening


def trained(model, inputs: dict, steps: int = 3):
    """`model` after a few training-mode forward passes (IsoBN statistics), back in eval mode."""
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(**inputs)
    return model.eval()


def eval_logits(model, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**inputs).logits


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got.double() - expected.double()).abs().max() / expected.double().abs().max())


def no_isobn_module(model) -> bool:
    return not any(type(m).__module__.startswith("isobn.") for m in model.modules())


@pytest.mark.parametrize("arch", list(ARCHS))
def test_fold_keeps_the_logits_of_every_architecture(arch, tmp_path):
    inputs = encoded(arch, n=8)
    model = trained(isobn.attach(sequence_classifier(arch), beta=1.0), inputs)
    expected = eval_logits(model, inputs)
    folded = fold(model)
    assert isobn.hf.find_isobn(model) is not None  # the argument is left as it was
    assert no_isobn_module(folded) and not hasattr(folded.config, "isobn")
    assert not any(m._forward_pre_hooks for m in folded.modules())
    assert relative_error(eval_logits(folded, inputs), expected) < 1e-5
    # the scale is not the identity, so the fold changed the head
    plain = eval_logits(isobn.detach(model), inputs)
    assert relative_error(plain, expected) > 1e-3
    folded.save_pretrained(tmp_path)
    reloaded = getattr(T, ARCHS[arch].classifier).from_pretrained(tmp_path)
    assert relative_error(eval_logits(reloaded, inputs), expected) < 1e-5


def with_float64_statistics(model):
    """`model` with its IsoBN's running estimates kept in float64 (IsoBN(dtype=float64))."""
    norm = isobn.hf.find_isobn(model)
    for name in ("running_std", "running_cov"):
        norm._buffers[name] = norm._buffers[name].double()
    return model


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fold_with_float64_statistics_is_exact_to_1e_6(arch, dtype):
    inputs = encoded(arch, n=8)
    model = isobn.attach(sequence_classifier(arch).to(dtype), beta=1.0)
    model = trained(with_float64_statistics(model), inputs)
    assert isobn.hf.find_isobn(model).scale().dtype == torch.float64
    expected = eval_logits(model, inputs)
    assert relative_error(eval_logits(fold(model), inputs), expected) < 1e-6


@pytest.mark.parametrize("name", list(FOUND))
def test_fold_keeps_the_logits_on_the_general_path(name):
    inputs = ids(n=8)
    model = trained(isobn.attach(general(name), beta=1.0), inputs)
    expected = eval_logits(model, inputs)
    folded = fold(model)
    assert no_isobn_module(folded)
    assert relative_error(eval_logits(folded, inputs), expected) < 1e-5


def test_fold_of_a_model_without_isobn_is_a_copy():
    model = sequence_classifier("bert")
    folded = fold(model)
    assert folded is not model
    inputs = encoded("bert")
    torch.testing.assert_close(eval_logits(folded, inputs), eval_logits(model, inputs))


def test_fold_of_a_peft_model_merges_the_adapter(arch="bert"):
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query"])
    model = peft.get_peft_model(sequence_classifier(arch), config)
    for module in model.modules():  # a non-zero adapter
        if hasattr(module, "lora_B"):
            nn.init.normal_(module.lora_B["default"].weight, std=0.5)
    inputs = encoded(arch, n=8)
    trained(isobn.attach(model), inputs)
    expected = eval_logits(model, inputs)
    folded = fold(model)
    assert isinstance(folded, getattr(T, ARCHS[arch].classifier)) and no_isobn_module(folded)
    assert not any(type(m).__module__.startswith("peft.") for m in folded.modules())
    assert relative_error(eval_logits(folded, inputs), expected) < 1e-5


class _ReluHead(nn.Module):
    """A head with a non-linear step before its first linear layer."""

    def __init__(self, d: int, c: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d, c)

    def forward(self, x):
        return self.dense(torch.relu(x))


def test_a_non_linearity_before_the_first_linear_layer_is_refused():
    inputs = encoded("bert", n=8)
    model = trained(isobn.attach(sequence_classifier("bert")), inputs)
    model.classifier = _ReluHead(model.config.hidden_size, model.num_labels)
    with pytest.raises(NotFoldable, match="non-linear step") as error:
        fold(model)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "norm",
    [
        lambda d: isobn.IsoBN(d),
        lambda d: isobn.IsoBN(d, dtype=torch.float64),
        lambda d: Whitening(d),
        lambda d: Whitening(d, dtype=torch.float64),
        lambda d: nn.BatchNorm1d(d),
        lambda d: nn.Identity(),
    ],
)
def test_the_eval_affine_map_of_each_norm_folds_exactly(norm):
    torch.manual_seed(0)
    d, c = 6, 3
    layer = norm(d)
    if isinstance(layer, nn.BatchNorm1d):  # non-trivial affine parameters
        nn.init.normal_(layer.weight)
        nn.init.normal_(layer.bias)
    layer.train()
    for _ in range(4):
        layer(torch.randn(32, d) * torch.arange(1, d + 1) + 3.0)
    layer.eval()
    linear = nn.Linear(d, c)
    x = torch.randn(10, d) * torch.arange(1, d + 1) + 3.0
    with torch.no_grad():
        expected = linear(layer(x))
        fold_into_linear(eval_affine(layer), linear)
        got = linear(x)
    assert relative_error(got, expected) < 1e-5


def test_layernorm_is_refused_in_one_line():
    with pytest.raises(NotFoldable, match="LayerNorm cannot be folded: it normalises each"):
        eval_affine(nn.LayerNorm(4))


def test_isobn_hf_is_reachable_from_import_isobn():
    code = "import isobn; print(isobn.hf.from_pretrained.__name__, isobn.hf.fold.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["from_pretrained", "fold"]
