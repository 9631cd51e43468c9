"""An `isobn train` classifier as a plain transformers model (isobn.training.to_hf): the same
eval logits for every norm and every encoder whose head takes the pooler run's head exactly;
one-line refusals for the rest."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers as T
from tiny_encoders import tokenizer, write_encoder

from isobn.errors import UserError
from isobn.training.model import ModelConfig, SequenceClassifier
from isobn.training.pretrained import load_encoder
from isobn.training.to_hf import to_transformers

TEXTS = ["good movie", "the plot was very dull and weak", "a nice cast", "bad"]
EXACT_ARCHS = ["bert", "albert", "roberta", "xlm-roberta", "camembert", "mpnet"]


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    root = tmp_path_factory.mktemp("encoders")
    return {arch: str(write_encoder(arch, root / arch)) for arch in [*EXACT_ARCHS, "distilbert"]}


def harness(encoder_dir: str, method: str = "isobn", pooling: str = "pooler", **config):
    """A harness classifier whose norm has statistics (a few training-mode passes), eval mode."""
    values = dict(encoder=encoder_dir, num_labels=3, label_names=["neg", "neu", "pos"])
    model_config = ModelConfig(**{**values, **config, "method": method, "pooling": pooling})
    torch.manual_seed(0)
    model = SequenceClassifier(model_config, load_encoder(encoder_dir))
    torch.nn.init.normal_(model.classifier.bias)
    return model


def batch(arch: str) -> dict:
    return dict(tokenizer(arch)(TEXTS, padding=True, return_tensors="pt"))


def with_statistics(model, inputs: dict):
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    return model.eval()


def relative_error(got, expected) -> float:
    return float((got - expected).abs().max() / expected.abs().max())


def harness_logits(model, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits


@pytest.mark.parametrize("arch", EXACT_ARCHS)
def test_every_exact_architecture_keeps_the_logits(arch, encoders):
    inputs = batch(arch)
    model = with_statistics(harness(encoders[arch]), inputs)
    plain = to_transformers(model)
    assert type(plain).__name__.endswith("ForSequenceClassification")
    assert plain.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    assert plain.config.label2id == {"neg": 0, "neu": 1, "pos": 2}
    with torch.no_grad():
        got = plain(**inputs).logits
    assert relative_error(got, harness_logits(model, inputs)) < 1e-5


@pytest.mark.parametrize(
    "method",
    ["none", "isobn", "isobn:beta=1.0,use_correlation=false", "whitening", "batchnorm",
     "isobn+correg", "istar"],
)  # fmt: skip
def test_every_foldable_norm_keeps_the_logits(method, encoders):
    inputs = batch("bert")
    model = with_statistics(harness(encoders["bert"], method), inputs)
    with torch.no_grad():
        got = to_transformers(model)(**inputs).logits
    assert relative_error(got, harness_logits(model, inputs)) < 1e-5


def test_a_regression_run_is_a_one_output_regression_model(encoders):
    inputs = batch("bert")
    model = harness(encoders["bert"], num_labels=1, regression=True, label_names=[])
    model = with_statistics(model, inputs)
    plain = to_transformers(model)
    assert plain.config.num_labels == 1 and plain.config.problem_type == "regression"
    with torch.no_grad():
        got = plain(**inputs).logits
    assert relative_error(got, harness_logits(model, inputs)) < 1e-5


def test_lora_layers_are_merged(encoders):
    pytest.importorskip("peft")
    inputs = batch("bert")
    model = harness(encoders["bert"], peft="lora:r=4,alpha=8,target=query,value")
    for module in model.modules():  # a non-zero adapter
        if hasattr(module, "lora_B"):
            torch.nn.init.normal_(module.lora_B["default"].weight, std=0.5)
    model = with_statistics(model, inputs)
    plain = to_transformers(model)
    assert not any(type(m).__module__.startswith("peft.") for m in plain.modules())
    assert any(type(m).__module__.startswith("peft.") for m in model.modules())  # unchanged
    with torch.no_grad():
        got = plain(**inputs).logits
    assert relative_error(got, harness_logits(model, inputs)) < 1e-5


@pytest.mark.parametrize(
    ("arch", "method", "pooling", "message"),
    [
        ("bert", "isobn", "cls", "--pooling cls cannot be exported"),
        ("bert", "isobn", "mean", "--pooling mean cannot be exported"),
        ("bert", "layernorm", "pooler", "LayerNorm cannot be folded"),
        ("distilbert", "isobn", "cls", "--pooling cls cannot be exported"),
    ],
)
def test_what_has_no_exact_transformers_form_is_refused(arch, method, pooling, message, encoders):
    model = harness(encoders[arch], method, pooling).eval()
    with pytest.raises(UserError, match=message) as error:
        to_transformers(model)
    assert "\n" not in str(error.value)


def test_a_head_of_another_form_is_refused(encoders, monkeypatch):
    """An encoder whose classifier class has no pooler layout (DistilBERT's: pre_classifier,
    ReLU) is refused even where the encoder offers a pooled output."""
    model = harness(encoders["bert"]).eval()
    real = T.AutoModelForSequenceClassification.from_config

    def distil_like(config):
        built = real(config)
        built.bert.pooler = None
        return built

    monkeypatch.setattr(T.AutoModelForSequenceClassification, "from_config", distil_like)
    with pytest.raises(UserError, match="cannot be exported as a transformers model"):
        to_transformers(model)


@pytest.mark.parametrize("arch", ["mpnet"])  # the RoBERTa-style head; BERT's: tests/cli
def test_onnx_of_a_first_token_head_gives_the_same_logits(arch, encoders, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from isobn.training.onnx_export import write_onnx

    model = with_statistics(harness(encoders[arch]), batch(arch))
    write_onnx(to_transformers(model), tokenizer(arch), tmp_path / "model.onnx")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    texts = ["nice", "the cast was quite superb and the story great", "a", "bad film"]
    inputs = tokenizer(arch)(texts, padding=True, return_tensors="np")
    (logits,) = session.run(["logits"], {i.name: inputs[i.name] for i in session.get_inputs()})
    expected = harness_logits(model, {k: torch.from_numpy(v) for k, v in inputs.items()})
    np.testing.assert_allclose(logits, expected.numpy(), rtol=1e-4, atol=1e-4)
