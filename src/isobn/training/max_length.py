"""The ``--max-length`` check shared by ``isobn train`` and ``isobn predict``."""

from __future__ import annotations

from isobn.errors import UserError

__all__ = ["check_max_length"]

# tokenizers without a limit report a huge model_max_length (~1e30)
_NO_LIMIT = 1_000_000


def check_max_length(max_length: int, model: str, tokenizer, encoder_config, pairs: bool) -> None:
    """``max_length`` must leave room for text and fit the encoder's position embeddings.

    ``model`` names the model in the message (``--model``, or the checkpoint of predict);
    ``pairs``: inputs are text pairs (two sets of special tokens). One-line UserError if not.
    """
    minimum = tokenizer.num_special_tokens_to_add(pair=pairs) + (2 if pairs else 1)
    if max_length < minimum:
        raise UserError(
            f"--max-length {max_length} leaves no room for text after the special tokens; "
            f"use --max-length {minimum} or more"
        )
    limits = [getattr(encoder_config, "max_position_embeddings", None)]
    if tokenizer.model_max_length < _NO_LIMIT:
        limits.append(tokenizer.model_max_length)
    limits = [limit for limit in limits if isinstance(limit, int) and limit > 0]
    if limits and max_length > min(limits):
        raise UserError(
            f"--max-length {max_length} exceeds the {min(limits)} positions of {model}; "
            f"use --max-length {min(limits)} or less"
        )
