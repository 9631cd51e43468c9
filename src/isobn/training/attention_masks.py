"""The attention mask an encoder is given, prepared so that its forward reads nothing from the
device.

Given a 2D padding mask (B, T), transformers checks on every forward whether the batch holds
any padding (`padding_mask.all()` in `masking_utils`) so that SDPA may drop the mask: one host
read, a synchronisation on a GPU, per step. A mask that is already 4D is used as it is. For
the encoders below under PyTorch SDPA, the 4D boolean key mask (B, 1, 1, T) gives the same
attention (it broadcasts over heads and queries as the mask transformers builds does), with
no read; `tests/training/test_attention_masks.py` checks each of them against its own mask.
"""

from __future__ import annotations

from torch import Tensor, nn

# model types whose self-attention builds its mask with transformers'
# `create_bidirectional_mask` (a 4D mask passes through unchanged) and runs
# `sdpa_attention_forward`: no relative positions, no local windows
PREPARED_MASK_MODEL_TYPES = frozenset(
    {"albert", "bert", "camembert", "distilbert", "electra", "roberta", "xlm-roberta"}
)


def prepares_mask(encoder: nn.Module) -> bool:
    """Whether `encoder` takes the prepared 4D mask: transformers' own class (not remote code
    that reuses a model type) of a model type above, running SDPA."""
    config = getattr(encoder, "config", None)
    return (
        type(encoder).__module__.startswith("transformers.models.")
        and getattr(config, "model_type", None) in PREPARED_MASK_MODEL_TYPES
        and getattr(config, "_attn_implementation", None) == "sdpa"
    )


def encoder_attention_mask(encoder: nn.Module, attention_mask: Tensor) -> Tensor:
    """The mask for `encoder`: (B, 1, 1, T) booleans, True = attend, for the encoders that take
    it (`prepares_mask`); else `attention_mask` (B, T) unchanged."""
    if not prepares_mask(encoder):
        return attention_mask
    return attention_mask[:, None, None, :].bool()
