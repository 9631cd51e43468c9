"""An `isobn train` classifier as a plain transformers ``*ForSequenceClassification`` model.

The harness computes logits = linear(dropout(norm(pool(encoder(x))))). In eval mode the norm
is affine (IsoBN, whitening, BatchNorm: [`isobn.hf.fold`][isobn.hf.fold]) and folds into the
linear layer, so the model is a transformers classifier wherever the architecture's own head
computes linear(pool(...)) for the run's pooling. Two head layouts do for ``--pooling pooler``:

* pooler -> dropout -> classifier (BERT, ALBERT, and others built alike): the encoder's pooler
  is the model's, the folded linear layer its ``classifier``;
* dropout -> dense -> tanh -> dropout -> out_proj on token 0 (RoBERTa, XLM-R, CamemBERT,
  MPNet): the encoder's pooler is dense -> tanh on token 0, so its dense layer becomes
  ``classifier.dense`` and the folded linear layer ``classifier.out_proj``.

``--pooling cls``, ``mean`` and ``last`` feed the pooled vector straight to the linear layer.
One head takes that exactly, for ``cls``: DeBERTa's dropout -> dense -> act (``ContextPooler``)
on token 0, then dropout -> classifier, with the identity as dense and ``pooler_hidden_act``
"linear". Every other head adds a pooler or a dense layer with a non-linearity: refused, as is
any architecture whose head fits no layout. The other encoders without a pooler (ModernBERT,
DistilBERT, ELECTRA) train only with those poolings, so no run on them exports; a
transformers model fine-tuned on them with IsoBN attached does
([`isobn.hf.fold`][isobn.hf.fold]). Every conversion is checked: the transformers model must
give the harness model's logits on a random batch, else it is refused.
LoRA layers (``--peft``) are merged into the encoder's weights first (peft's ``merge``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from isobn.errors import UserError
from isobn.hf.fold import eval_affine, fold_into_linear
from isobn.training.model import SequenceClassifier


def label_config(model_config) -> dict:
    """num_labels, id2label, label2id and problem_type of the run (names as in the data)."""
    if model_config.regression:
        return {"num_labels": 1, "problem_type": "regression"}
    names = model_config.label_names or [str(i) for i in range(model_config.num_labels)]
    return {
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
        "problem_type": "single_label_classification",
    }


def to_transformers(model: SequenceClassifier):
    """The plain transformers classifier with the eval logits of `model` (left unchanged).

    Raises:
        UserError: one line naming why the run has no exact transformers form.
    """
    from transformers import AutoModelForSequenceClassification

    run = model.config
    context_pooler = run.pooling == "cls" and has_context_pooler(model.encoder.config)
    if run.pooling != "pooler" and not context_pooler:
        raise UserError(pooling_refusal(run.pooling, model.encoder))
    encoder = merged_encoder(model.encoder)
    config = copy.deepcopy(encoder.config)
    config.update({**label_config(run), "classifier_dropout": model.dropout.p})
    if context_pooler:  # dense -> act on token 0 becomes the identity on token 0
        config.update({"pooler_hidden_act": "linear", "pooler_hidden_size": config.hidden_size})
        config.update({"cls_dropout": model.dropout.p})
    try:
        target = AutoModelForSequenceClassification.from_config(config)
    except ValueError:
        why = "transformers has no such class"
        raise UserError(_no_head(type(encoder).__name__, why)) from None
    classifier = copy.deepcopy(model.classifier)
    fold_into_linear(eval_affine(model.norm), classifier)
    if context_pooler:
        _copy_to_context_pooler_head(encoder, classifier, target)
    else:
        _copy_weights(encoder, classifier, target)
    _check_same_logits(model, target)
    return target.eval()


def has_context_pooler(encoder_config) -> bool:
    """Whether the architecture's head is DeBERTa's: dropout -> dense -> act (the config's
    ``pooler_hidden_act``) on token 0, then dropout -> classifier. With the identity as dense
    and act, it computes linear(first token's hidden state): a ``--pooling cls`` run's head."""
    return hasattr(encoder_config, "pooler_hidden_act") and hasattr(
        encoder_config, "pooler_hidden_size"
    )


# what a linear head reads under each --pooling but pooler (config.POOLINGS)
_POOLED = {
    "cls": "first token's hidden state",
    "mean": "mean of the hidden states",
    "last": "last token's hidden state",
}


def pooling_refusal(pooling: str, encoder: nn.Module) -> str:
    """Why a run with `pooling` (not pooler) has no transformers form, and what to do instead:
    train with --pooling pooler where the encoder has a pooler; otherwise no run on it exports,
    but a transformers model fine-tuned with IsoBN attached does (the save_pretrained route)."""
    pooled = _POOLED.get(pooling, f"--pooling {pooling} vector")
    why = (
        f"a run with --pooling {pooling} cannot be exported as a transformers model: its "
        f"linear head reads the {pooled} directly, and {type(encoder).__name__}'s "
        "*ForSequenceClassification head does not (it adds a pooler or a dense layer with a "
        "non-linearity)"
    )
    if getattr(encoder, "pooler", None) is not None:
        return f"{why}; train with --pooling pooler to export, or serve with `isobn predict`"
    if has_context_pooler(encoder.config):
        return f"{why}; train with --pooling cls to export, or serve with `isobn predict`"
    return (
        f"{why}, and {type(encoder).__name__} has no pooler, so no run of `isobn train` on it "
        "exports; serve it with `isobn predict`, or fine-tune a *ForSequenceClassification "
        "model with isobn.attach and export its save_pretrained directory"
    )


def _no_head(name: str, why: str) -> str:
    return (
        f"a run on {name} cannot be exported as a transformers model: {why}; only encoders "
        "whose *ForSequenceClassification head is pooler -> dropout -> linear (BERT, ALBERT) or "
        "a dense + tanh head on token 0 (RoBERTa, XLM-R, CamemBERT, MPNet) can take a "
        "pooler run's head exactly, and DeBERTa's context pooler a cls run's"
    )


def merged_encoder(encoder: nn.Module) -> nn.Module:
    """A copy of `encoder` with its LoRA layers (``--peft``) merged into the base weights
    (W + (alpha / r) B A, by peft) and replaced by them; `encoder` itself if it has none."""
    if not any(type(m).__module__.startswith("peft.") for m in encoder.modules()):
        return encoder
    from peft.tuners.lora import LoraLayer

    encoder = copy.deepcopy(encoder)
    for name, module in list(encoder.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(encoder.get_submodule(parent), child, module.get_base_layer())
    return encoder


@torch.no_grad()
def _copy_weights(encoder: nn.Module, classifier: nn.Linear, target: nn.Module) -> None:
    """Encoder weights into ``target.base_model``, the folded linear layer (and the pooler's
    dense layer) into target's head, by the head layout of its class."""
    name = type(encoder).__name__
    head = getattr(target, "classifier", None)
    state = encoder.state_dict()
    pooler = getattr(encoder, "pooler", None)
    if pooler is None:
        raise UserError(_no_head(name, "its encoder has no pooler"))
    if isinstance(head, nn.Linear) and getattr(target.base_model, "pooler", None) is not None:
        head.load_state_dict(classifier.state_dict())
    elif isinstance(getattr(head, "dense", None), nn.Linear) and hasattr(head, "out_proj"):
        dense = getattr(pooler, "dense", None)
        if not isinstance(dense, nn.Linear):
            raise UserError(_no_head(name, "its pooler has no dense layer"))
        state = {k: v for k, v in state.items() if not k.startswith("pooler.")}
        head.dense.load_state_dict(dense.state_dict())
        head.out_proj.load_state_dict(classifier.state_dict())
    else:
        raise UserError(_no_head(name, f"{type(target).__name__} has another head"))
    _load_encoder_state(state, name, target)


def _load_encoder_state(state: dict, name: str, target: nn.Module) -> None:
    """The encoder's weights `state` into ``target.base_model``; a one-line refusal naming a
    key that does not fit (the encoder is `name`)."""
    missing, unexpected = target.base_model.load_state_dict(state, strict=False)
    if missing or unexpected:
        key = (missing or unexpected)[0]
        raise UserError(_no_head(name, f"its weights do not fit {type(target).__name__} ({key})"))


def _non_finite_logits(model: SequenceClassifier) -> UserError:
    """The refusal of a run whose logits are NaN or inf: nothing to check an export against."""
    from isobn import json_text

    found = json_text.first_non_finite(model.encoder.config.to_dict())
    why = (
        f"its config.json sets {found[0]} to {json_text.word(found[1])}"
        if found is not None
        else "its weights hold NaN or inf"
    )
    return UserError(
        f"the run's model computes NaN or infinite logits ({why}), so no export can be checked "
        "against it: restore the checkpoint as `isobn train` wrote it"
    )


@torch.no_grad()
def _copy_to_context_pooler_head(
    encoder: nn.Module, classifier: nn.Linear, target: nn.Module
) -> None:
    """Encoder weights into ``target.base_model``, the identity into its context pooler's
    dense layer (its act is linear), the folded linear layer into its ``classifier``."""
    dense = target.pooler.dense
    nn.init.eye_(dense.weight)
    nn.init.zeros_(dense.bias)
    target.classifier.load_state_dict(classifier.state_dict())
    _load_encoder_state(encoder.state_dict(), type(encoder).__name__, target)


@torch.no_grad()
def _check_same_logits(model: SequenceClassifier, target: nn.Module) -> None:
    """Refuse a conversion whose logits differ from the harness model's on a random batch."""
    vocab = int(getattr(target.config, "vocab_size", 100))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, max(vocab, 6), (3, 7), generator=generator)
    mask = torch.ones_like(ids)
    mask[1:, 5:] = 0  # padded rows
    device = next(model.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    modes = model.training, target.training
    model.eval(), target.to(device).eval()
    try:
        expected = model(input_ids=ids, attention_mask=mask).logits
        got = target(input_ids=ids, attention_mask=mask).logits
    finally:
        model.train(modes[0]), target.train(modes[1])
    if not torch.isfinite(expected).all():
        raise _non_finite_logits(model)
    scale = float(expected.abs().max()) or 1.0
    if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5 * scale):
        raise UserError(
            _no_head(
                type(model.encoder).__name__,
                f"{type(target).__name__} computes other logits from the same weights",
            )
        )
