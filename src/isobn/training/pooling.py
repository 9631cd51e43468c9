"""Pooling the encoder's output into one (B, H) vector per text, and the poolings a model
cannot use: "pooler" without an HF pooler, "cls"/"pooler" on a causal decoder, and models that
are no encoder (an encoder-decoder)."""

from __future__ import annotations

import torch
from torch import Tensor

from isobn.errors import UserError


def pool_hidden(hidden: Tensor, attention_mask: Tensor, pooling: str) -> Tensor:
    """[CLS] (first token), last kept token or masked mean of hidden states (B, T, H) ->
    (B, H). "last": the last position the (B, T) mask keeps, with right or left padding."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        positions = torch.arange(hidden.shape[1], device=hidden.device)  # (T,)
        last = (attention_mask.to(torch.long) * positions).argmax(1)  # (B,)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


NO_POOLER = "the encoder has no pooler: use --pooling cls or --pooling mean"
# model types of the causal-LM mapping that are bidirectional as AutoModel builds them
_BIDIRECTIONAL = frozenset({"xlnet", "bert-generation"})


def returns_pooler_output(encoder_class: type) -> bool | None:
    """Whether an HF encoder class's forward returns a `pooler_output`, read from the
    ModelOutput classes its return annotation names; None when the annotation does not tell.
    (A BERT built with add_pooling_layer=False still returns None there; AutoModel never
    builds one.)"""
    import typing

    def classes(hint) -> list[type]:
        if isinstance(hint, type):
            return [hint]
        return [c for arg in typing.get_args(hint) for c in classes(arg)]

    try:
        hint = typing.get_type_hints(encoder_class.forward).get("return")
    except Exception:  # noqa: BLE001 -- unresolvable annotations (remote code): not known
        return None
    outputs = [c for c in classes(hint) if hasattr(c, "__dataclass_fields__")]
    return any("pooler_output" in c.__dataclass_fields__ for c in outputs) if outputs else None


def is_causal_decoder(encoder_config) -> bool:
    """Whether the model attends only to earlier tokens: a config with `is_decoder`, or a
    model type that transformers has only as a causal LM (gpt2, llama, ...), not as a masked
    LM nor as an encoder-decoder."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if getattr(encoder_config, "is_decoder", False):
        return True
    kind = getattr(encoder_config, "model_type", None)
    return (
        kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
        and kind not in _BIDIRECTIONAL
        and not getattr(encoder_config, "is_encoder_decoder", False)
    )


def builds_encoder_decoder(encoder_config) -> bool:
    """Whether AutoModel builds an encoder-decoder model from this config: `is_encoder_decoder`
    in it (T5, BART, Pegasus, ...), or a model class whose forward takes decoder inputs (the
    config of a T5EncoderModel says False, but AutoModel builds the whole T5Model from it)."""
    import inspect

    from transformers import MODEL_MAPPING

    if getattr(encoder_config, "is_encoder_decoder", False):
        return True
    try:
        classes = MODEL_MAPPING[type(encoder_config)]
    except KeyError:  # not in the mapping (remote code): not known
        return False
    for model_class in classes if isinstance(classes, tuple) else (classes,):
        try:
            if "decoder_input_ids" in inspect.signature(model_class.forward).parameters:
                return True
        except (AttributeError, TypeError, ValueError):
            continue
    return False


def check_not_encoder_decoder(encoder_config, name: str) -> None:
    """Refuse an encoder-decoder model (`builds_encoder_decoder`): AutoModel builds the whole
    seq2seq model, whose forward needs decoder inputs (T5 raised a ValueError, BART a
    RuntimeError, after the data was tokenised)."""
    if builds_encoder_decoder(encoder_config):
        kind = getattr(encoder_config, "model_type", None) or type(encoder_config).__name__
        raise UserError(
            f"{name} is an encoder-decoder model ({kind}): isobn fine-tunes and measures an "
            "encoder (BERT, RoBERTa, ...) or a decoder (with --pooling last or mean), not a "
            "sequence-to-sequence model; pass such a model as --model"
        )


def check_pooler(encoder_config, pooling: str) -> None:
    """Refuse, before data is tokenised, pooling "cls" or "pooler" for a causal decoder (its
    first token sees only itself) and "pooler" for an encoder whose output has none (where
    the architecture cannot tell, the first batch does)."""
    from transformers import MODEL_MAPPING

    if pooling in ("cls", "pooler") and is_causal_decoder(encoder_config):
        kind = getattr(encoder_config, "model_type", None) or type(encoder_config).__name__
        default = " (the default)" if pooling == "pooler" else ""
        raise UserError(
            f"{kind} is a causal decoder: its first token sees only itself, so --pooling "
            f"{pooling}{default} would give every text nearly the same embedding; use "
            "--pooling last (the last token, which sees the whole text) or --pooling mean"
        )
    if pooling != "pooler" or type(encoder_config) not in MODEL_MAPPING:
        return
    encoder_class = MODEL_MAPPING[type(encoder_config)]
    if isinstance(encoder_class, type) and returns_pooler_output(encoder_class) is False:
        raise UserError(NO_POOLER)


def pool_output(out, attention_mask: Tensor, pooling: str) -> Tensor:
    """Pooled (B, H) embedding of an HF encoder output: `pooler_output`, [CLS] or mean."""
    if pooling == "pooler":
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            raise UserError(NO_POOLER)
        return pooled
    return pool_hidden(out.last_hidden_state, attention_mask, pooling)
