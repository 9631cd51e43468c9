"""The prepared 4D mask gives each listed encoder the same outputs as its own 2D mask, and its
forward then reads nothing from the device."""

import pytest
import torch
from op_counts import OpCounter
from transformers import AutoConfig, AutoModel

from isobn.training.attention_masks import (
    PREPARED_MASK_MODEL_TYPES,
    encoder_attention_mask,
    prepares_mask,
)

SIZES = {  # a small random encoder of each type (distilbert names its sizes apart)
    "distilbert": dict(dim=32, n_layers=2, n_heads=4, hidden_dim=37),
    "albert": dict(embedding_size=16),
    "modernbert": dict(
        pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=3, sep_token_id=4
    ),
}


def tiny_encoder(model_type: str, attn: str = "sdpa"):
    sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
    config = AutoConfig.for_model(
        model_type, vocab_size=99, **{**sizes, **SIZES.get(model_type, {})}
    )
    torch.manual_seed(0)
    return AutoModel.from_config(config, attn_implementation=attn).eval()


def padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """ids (3, 7) and mask: lengths 7, 4 and 2 (the padding in the middle row, as collate
    pads: right)."""
    lengths = torch.tensor([7, 4, 2])
    mask = (torch.arange(7)[None, :] < lengths[:, None]).long()
    ids = torch.randint(5, 99, (3, 7), generator=torch.Generator().manual_seed(1)) * mask
    return ids, mask


@pytest.mark.parametrize("model_type", sorted(PREPARED_MASK_MODEL_TYPES))
def test_the_prepared_mask_gives_the_encoders_own_outputs_without_a_read(model_type):
    encoder = tiny_encoder(model_type)
    ids, mask = padded_batch()
    assert prepares_mask(encoder)
    prepared = encoder_attention_mask(encoder, mask)
    assert prepared.shape == (3, 1, 1, 7) and prepared.dtype == torch.bool
    with torch.no_grad():
        with OpCounter() as own:
            expected = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        with OpCounter() as counted:
            got = encoder(input_ids=ids, attention_mask=prepared).last_hidden_state
    assert own.host_reads >= 1  # transformers' `padding_mask.all()`
    assert counted.host_reads == 0
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_an_unpadded_batch_gives_the_same_outputs_too():
    encoder = tiny_encoder("bert")
    ids = torch.randint(5, 99, (2, 6), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        expected = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        got = encoder(input_ids=ids, attention_mask=encoder_attention_mask(encoder, mask))
    torch.testing.assert_close(got.last_hidden_state, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "model_type, attn", [("bert", "eager"), ("deberta-v2", "eager"), ("modernbert", "sdpa")]
)
def test_other_encoders_keep_the_2d_mask(model_type, attn):
    """Eager attention adds a float mask (DeBERTa has no SDPA), ModernBERT's local windows
    build their own: they get the 2D mask, as before."""
    encoder = tiny_encoder(model_type, attn)
    ids, mask = padded_batch()
    assert not prepares_mask(encoder)
    assert encoder_attention_mask(encoder, mask) is mask


def test_remote_code_that_reuses_a_model_type_keeps_the_2d_mask():
    """A model class from outside transformers (trust_remote_code: e.g. a BERT variant whose
    config says "bert") may build its mask its own way: it gets the 2D mask."""
    encoder = tiny_encoder("bert")
    encoder.__class__ = type("RemoteBert", (type(encoder),), {"__module__": "remote.modeling"})
    ids, mask = padded_batch()
    assert not prepares_mask(encoder)
    assert encoder_attention_mask(encoder, mask) is mask
