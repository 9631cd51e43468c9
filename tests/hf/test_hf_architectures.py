"""isobn.attach on every supported architecture (tiny random configs, no downloads): where IsoBN
sits, a Trainer step, save_pretrained -> from_pretrained, save_isobn -> load_isobn, detach, a
pipeline; then the general path for other sequence classifiers and what it refuses."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
import transformers as T
from conftest import sentiment_rows
from tiny_encoders import ARCHS, GUIDE_NAMES, HIDDEN, LABELS, sequence_classifier, tokenizer
from transformers.utils import logging as hf_logging

import isobn
from isobn import IsoBN
from isobn.hf import SUPPORTED_ARCHITECTURES, find_isobn, from_pretrained, load_isobn, save_isobn
from isobn.hf.sites import TABLE

hf_logging.set_verbosity_error()


def encoded(arch: str, n: int = 6, seed: int = 1, labels: bool = False) -> dict:
    """Real sentences through the architecture's own tokenizer, padded: (B, T) tensors."""
    rows = sentiment_rows(n, seed)
    batch = dict(tokenizer(arch)([r["text"] for r in rows], padding=True, return_tensors="pt"))
    if labels:
        batch["labels"] = torch.tensor([i % LABELS for i in range(n)])
    return batch


def logits(model, inputs: dict) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**inputs).logits


def test_every_table_row_is_tested():
    assert {ARCHS[a].classifier for a in ARCHS} == set(SUPPORTED_ARCHITECTURES)


GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "huggingface.md"


def test_guide_table_is_the_tested_one():
    """Each row of the Hugging Face guide's table: its site is the one attach uses and the
    tests check, its pooler column what AutoModel builds."""
    section = GUIDE.read_text().split("## Where IsoBN goes\n")[1].split("\n## ")[0]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ")]
    covered = []
    for names, _, site, pooler in rows[1:-1]:  # header and the general-path row aside
        for arch in (a for name in names.strip().split(", ") for a in GUIDE_NAMES[name]):
            spec = ARCHS[arch]
            assert site.strip() == f"`{TABLE[spec.classifier].path}`" == f"`{spec.site}`", arch
            encoder = T.AutoModel.from_config(spec.config(tokenizer(arch)))
            assert (getattr(encoder, "pooler", None) is not None) is spec.has_pooler, arch
            assert pooler.strip() == ("yes" if spec.has_pooler else "no"), arch
            covered.append(arch)
    assert sorted(covered) == sorted(ARCHS)
    assert rows[-1][0].strip() == "other `*ForSequenceClassification`"


@pytest.mark.parametrize("arch", list(ARCHS))
def test_isobn_sees_the_vector_entering_the_head(arch):
    spec = ARCHS[arch]
    model = sequence_classifier(arch).eval()
    inputs = encoded(arch)
    path, first_token = spec.reference
    entering = []
    handle = model.get_submodule(path).register_forward_pre_hook(
        lambda module, args: entering.append(args[0])
    )
    before = logits(model, inputs)
    handle.remove()
    expected = entering[0][:, 0] if first_token else entering[0]  # (B, D)

    isobn.attach(model, beta=0.4)
    norm = find_isobn(model)
    assert isinstance(norm, IsoBN) and norm.beta == 0.4 and norm.num_features == HIDDEN
    assert model.get_submodule(f"{spec.site}.isobn") is norm
    assert f"{spec.site}.isobn.running_cov" in model.state_dict()
    seen = []
    norm.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    assert torch.equal(logits(model, inputs), before)  # no statistics yet: the identity
    assert torch.equal(seen[0], expected)

    model.train()
    out = model(**encoded(arch, n=5, seed=2))
    assert tuple(seen[-1].shape) == (5, HIDDEN) and norm.num_batches_tracked.item() == 1
    out.logits.sum().backward()  # gradients flow through the rescaled vector
    assert not torch.allclose(logits(model, inputs), before)  # now IsoBN rescales
    assert norm.num_batches_tracked.item() == 1  # eval mode leaves the statistics alone


@pytest.mark.parametrize("arch", list(ARCHS))
def test_detach_restores_the_original_outputs_exactly(arch):
    model = sequence_classifier(arch)
    inputs = encoded(arch)
    before = logits(model, inputs)
    modules = dict(model.named_modules())
    keys = list(model.state_dict())
    isobn.attach(model)
    model.train()
    model(**encoded(arch, seed=2))
    assert not torch.allclose(logits(model, inputs), before)
    assert isobn.detach(model) is model
    assert dict(model.named_modules()) == modules  # same names, same objects
    assert list(model.state_dict()) == keys
    assert not hasattr(model.config, "isobn")
    assert all(not m._forward_pre_hooks for m in model.modules())
    assert torch.equal(logits(model, inputs), before)


class Rows(torch.utils.data.Dataset):
    def __init__(self, batch: dict) -> None:
        self.batch = batch

    def __len__(self) -> int:
        return len(self.batch["labels"])

    def __getitem__(self, i: int) -> dict:
        return {k: v[i] for k, v in self.batch.items()}


@pytest.fixture(scope="module", params=list(ARCHS))
def trained(request, tmp_path_factory):
    """(arch, model) with IsoBN trained for 2 steps by an unchanged HF Trainer."""
    arch = request.param
    model = isobn.attach(sequence_classifier(arch), momentum=0.1)
    args = T.TrainingArguments(
        output_dir=str(tmp_path_factory.mktemp("trainer")),
        per_device_train_batch_size=8,
        max_steps=2,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    data = Rows(encoded(arch, n=16, labels=True))
    result = T.Trainer(model=model, args=args, train_dataset=data).train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    return arch, model.eval()


def test_trainer_updates_isobn(trained):
    _, model = trained
    norm = find_isobn(model)
    assert norm.num_batches_tracked.item() == 2
    assert norm.running_cov.abs().sum() > 0 and torch.isfinite(norm.running_cov).all()


def test_save_pretrained_and_save_isobn_round_trips(trained, tmp_path):
    arch, model = trained
    inputs = encoded(arch)
    model.save_pretrained(tmp_path / "whole")
    loaded = from_pretrained(tmp_path / "whole")
    assert type(loaded) is type(model) and loaded.config.isobn == model.config.isobn
    state = find_isobn(model).state_dict()
    assert state.keys() == find_isobn(loaded).state_dict().keys()
    for key, value in find_isobn(loaded).state_dict().items():
        assert torch.equal(value, state[key]), key
    assert torch.equal(logits(loaded, inputs), logits(model, inputs))

    save_isobn(model, tmp_path / "only")
    base = isobn.detach(copy.deepcopy(model))  # the same weights, no IsoBN
    assert load_isobn(base, tmp_path / "only") is base
    assert torch.equal(logits(base, inputs), logits(model, inputs))


def test_pipeline_runs(trained):
    arch, model = trained
    classify = T.pipeline(
        "text-classification", model=model, tokenizer=tokenizer(arch), device="cpu"
    )
    out = classify(["the movie was good", "a dull plot"])
    assert len(out) == 2 and all(0 <= o["score"] <= 1 for o in out)
    assert find_isobn(model).num_batches_tracked.item() == 2  # inference does not update


# --- the general path: other *ForSequenceClassification models ------------------------------

SMALL = dict(
    vocab_size=60,
    hidden_size=HIDDEN,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=2 * HIDDEN,
    num_labels=LABELS,
    pad_token_id=0,
)
# the size fields of configs that do not use BERT's names
OTHER_SIZES = dict(
    embedding_size=HIDDEN,
    num_key_value_heads=2,
    head_dim=16,
    n_embd=HIDDEN,
    n_layer=2,
    n_head=2,
    d_model=HIDDEN,
    d_ff=2 * HIDDEN,
    d_kv=16,
    num_layers=1,
    num_decoder_layers=1,
    num_heads=2,
    encoder_layers=1,
    decoder_layers=1,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    encoder_ffn_dim=2 * HIDDEN,
    decoder_ffn_dim=2 * HIDDEN,
    attention_window=4,
)


def general(name: str):
    """A tiny sequence classifier outside the table, by model type (name[-variant])."""
    if name == "mean-head":
        return MeanHeadForSequenceClassification(T.RobertaConfig(**SMALL))
    if name == "token-classifier":
        return T.BertForTokenClassification(T.BertConfig(**SMALL))
    model_type, _, variant = name.partition(":")
    extra = {"classifier_pooling": variant} if variant else {}  # EuroBERT: bos, mean, late
    config = T.AutoConfig.for_model(model_type, **SMALL, **extra)
    for key, value in OTHER_SIZES.items():
        if hasattr(config, key):
            setattr(config, key, value)
    torch.manual_seed(0)
    return T.AutoModelForSequenceClassification.from_config(config)


class MeanHead(torch.nn.Module):
    """A head over the mean of all tokens: IsoBN on token 0 would change what it computes."""

    def __init__(self, hidden: int, labels: int) -> None:
        super().__init__()
        self.out_proj = torch.nn.Linear(hidden, labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out_proj(features.mean(1))


class MeanHeadForSequenceClassification(T.RobertaForSequenceClassification):
    def __init__(self, config) -> None:
        super().__init__(config)
        self.classifier = MeanHead(config.hidden_size, config.num_labels)


def ids(n: int = 4, t: int = 6, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 60, (n, t), generator=g)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


FOUND = {  # model type -> (site, IsoBN on token 0 of a sequence head)
    "deberta": ("dropout", False),  # DeBERTa-v1: ContextPooler -> dropout -> classifier
    "mobilebert": ("dropout", False),
    "ernie": ("dropout", False),
    "rembert": ("dropout", False),
    "fnet": ("dropout", False),
    "eurobert:bos": ("classifier", False),  # [BOS] -> dense -> GELU -> classifier, no dropout
    "convbert": ("classifier", True),  # RoBERTa-style heads that read token 0 of (B, T, D)
    "longformer": ("classifier", True),
    "big_bird": ("classifier", True),
    "data2vec-text": ("classifier", True),
    "esm": ("classifier", True),
}


@pytest.mark.parametrize("name", list(FOUND))
def test_general_path_places_isobn(name):
    site, first_token = FOUND[name]
    model = general(name).eval()
    entering = []
    model.classifier.register_forward_pre_hook(lambda module, args: entering.append(args[0]))
    before = logits(model, ids())
    expected = entering[-1][:, 0] if first_token else entering[-1]
    isobn.attach(model)
    norm = find_isobn(model)
    assert model.get_submodule(f"{site}.isobn") is norm and norm.num_features == HIDDEN
    seen = []
    norm.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    assert torch.equal(logits(model, ids()), before)
    assert torch.equal(seen[-1], expected)


@pytest.mark.parametrize("name", ["deberta", "convbert", "eurobert:bos"])
def test_general_path_trains_saves_loads_and_detaches(name, tmp_path):
    model = general(name).eval()
    before = logits(model, ids())
    isobn.attach(model, momentum=0.5)
    norm = find_isobn(model)
    assert all(m.training is False for m in model.modules())  # the probe left the modes as found
    model.train()
    model(**ids(seed=2))
    after = logits(model, ids())
    assert not torch.allclose(after, before)
    model.save_pretrained(tmp_path)
    loaded = from_pretrained(tmp_path)
    assert torch.equal(find_isobn(loaded).running_cov, norm.running_cov)
    assert torch.equal(logits(loaded, ids()), after)
    isobn.detach(model)
    assert torch.equal(logits(model, ids()), before)


@pytest.mark.parametrize("name", ["deberta", "convbert"])
def test_probe_leaves_modes_and_random_state_alone(name):
    model = general(name).train()
    model.classifier.eval()  # a mixed state comes back as it was
    state = torch.get_rng_state()
    isobn.attach(model)
    assert torch.equal(torch.get_rng_state(), state)
    assert not model.classifier.training
    assert all(m.training for n, m in model.named_modules() if not n.startswith("classifier"))


@pytest.mark.parametrize(
    "name, reason",
    [
        ("gpt2", "scores every token"),  # decoders: `score` on every token, then the last one
        ("llama", "scores every token"),
        ("qwen2", "scores every token"),
        ("mistral", "scores every token"),
        ("gemma", "scores every token"),
        ("eurobert:late", "scores every token"),  # logits averaged over tokens
        ("bart", "no head module named classifier or score"),  # a head on the last </s>
        ("mbart", "no head module named classifier or score"),
        ("t5", "no head module named classifier or score"),
        ("mean-head", "reads more than the first token"),
        ("xmod", "a test forward pass on token ids failed"),  # needs a language set first
        ("token-classifier", r"\*ForSequenceClassification"),
    ],
)
def test_general_path_refuses_what_it_cannot_place(name, reason):
    model = general(name)
    keys = list(model.state_dict())
    with pytest.raises(ValueError) as error:
        isobn.attach(model)
    message = str(error.value)
    assert f"IsoBN cannot be attached to {type(model).__name__}: " in message
    assert re.search(reason, message)
    assert "isobn train --model DIR" in message and "\n" not in message
    assert list(model.state_dict()) == keys and find_isobn(model) is None


# --- the method string, the handle, mismatched loads -------------------------------------------


def test_attach_accepts_a_method_string():
    model = isobn.attach(sequence_classifier("bert"), method="isobn:beta=0.25,momentum=none")
    assert model.config.isobn["beta"] == 0.25 and model.config.isobn["momentum"] is None
    with pytest.raises(ValueError, match="must be isobn"):
        isobn.attach(sequence_classifier("bert"), method="layernorm")
    with pytest.raises(ValueError, match="must be isobn"):
        isobn.attach(sequence_classifier("bert"), method="isobn+correg")
    with pytest.raises(ValueError, match="unknown parameter 'gamma' of isobn"):
        isobn.attach(sequence_classifier("bert"), method="isobn:gamma=1")
    with pytest.raises(TypeError, match="either in `method` or as keywords"):
        isobn.attach(sequence_classifier("bert"), method="isobn", beta=0.3)


def test_detach_removes_only_its_own_hook():
    model = isobn.attach(sequence_classifier("roberta"))
    calls = []
    model.classifier.register_forward_pre_hook(lambda module, args: calls.append(1))
    clone = copy.deepcopy(model)
    isobn.detach(clone)  # the clone's handle points at the clone's hook table
    assert len(model.classifier._forward_pre_hooks) == 2 and find_isobn(model) is not None
    model.train()(**encoded("roberta"))
    assert find_isobn(model).num_batches_tracked.item() == 1
    isobn.detach(model)
    assert len(model.classifier._forward_pre_hooks) == 1  # the user's hook stays
    model(**encoded("roberta"))
    assert len(calls) == 2


def test_load_isobn_refuses_another_size_and_leaves_the_model_alone(tmp_path):
    model = isobn.attach(sequence_classifier("deberta-v3"))
    save_isobn(model, tmp_path)
    config = ARCHS["deberta-v3"].config(tokenizer("deberta-v3"))
    config.hidden_size = config.pooler_hidden_size = config.intermediate_size = 16
    other = T.DebertaV2ForSequenceClassification(config)
    with pytest.raises(
        ValueError, match="of size 32, this model has it at dropout.isobn of size 16"
    ):
        load_isobn(other, tmp_path)
    assert find_isobn(other) is None and not hasattr(other.config, "isobn")
