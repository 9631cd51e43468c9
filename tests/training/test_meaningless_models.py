"""Inputs that would train a meaningless model with exit 0: a causal decoder pooled at its
first token (refused), and a pooled embedding that is one vector for every text (warned)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import transformers as T
from tiny_encoders import tokenizer as tiny_tokenizer

from isobn.cli.main import main
from isobn.training.evaluation import constant_embedding
from isobn.training.pooling import is_causal_decoder, pool_hidden

QUICK = ["--epochs", "1", "--batch-size", "16", "--max-length", "24", "--isotropy-examples", "16"]


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory) -> str:
    """A 2-layer GPT-2 saved with a byte-level BPE tokenizer that starts every text with
    <s>: [CLS]-style pooling of a causal model is then the same vector for every text."""
    directory = tmp_path_factory.mktemp("gpt2")
    tok = tiny_tokenizer("roberta")
    config = T.GPT2Config(
        vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=64,
        pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    T.GPT2Model(config).save_pretrained(directory)
    tok.save_pretrained(directory)
    return str(directory)


def files_args(sentiment_files) -> list[str]:
    return ["--train", sentiment_files["train"], "--dev", sentiment_files["dev"]]


@pytest.mark.parametrize(
    ("pooling", "shown"), [("cls", "--pooling cls would"), (None, "--pooling pooler (the default)")]
)
def test_a_causal_decoder_pooled_at_its_first_token_is_refused(
    tiny_gpt2, sentiment_files, tmp_path, capsys, pooling, shown
):
    out = tmp_path / "run"
    argv = ["train", "--model", tiny_gpt2, *files_args(sentiment_files), "--out", str(out)]
    code = main(argv + QUICK + (["--pooling", pooling] if pooling else []))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "gpt2 is a causal decoder: its first token sees only itself" in err
    assert shown in err and "use --pooling last" in err and "or --pooling mean" in err
    assert not out.exists()  # refused before anything is written


def test_a_causal_decoder_trains_with_last_token_pooling(tiny_gpt2, sentiment_files, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--model", tiny_gpt2, *files_args(sentiment_files), "--out", str(out)]
    assert main(argv + QUICK + ["--pooling", "last"]) == 0
    assert (out / "metrics.json").is_file()


def test_which_models_are_causal_decoders():
    assert is_causal_decoder(T.GPT2Config()) and is_causal_decoder(T.LlamaConfig())
    assert is_causal_decoder(T.BertConfig(is_decoder=True))
    for encoder in (T.BertConfig(), T.RobertaConfig(), T.XLNetConfig(), T.BartConfig()):
        assert not is_causal_decoder(encoder), type(encoder).__name__


def test_last_pooling_takes_the_last_token_the_mask_keeps_with_either_padding():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)  # (B, T, H)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    assert pool_hidden(hidden, right, "last").flatten().tolist() == [1.0, 7.0]
    assert pool_hidden(hidden, left, "last").flatten().tolist() == [3.0, 7.0]


def test_constant_embedding_is_one_vector_up_to_rounding():
    rng = np.random.default_rng(0)
    row = rng.normal(size=16).astype(np.float32)
    assert constant_embedding(np.stack([row] * 8))
    assert constant_embedding(np.stack([row, row * (1 + 1e-7)]))  # float rounding
    assert constant_embedding(np.zeros((4, 16)))
    assert not constant_embedding(np.stack([row, row + 1e-3]))
    assert not constant_embedding(rng.normal(size=(8, 16)))


def test_a_pooled_embedding_constant_over_the_dev_texts_is_warned_at_the_first_evaluation(
    tiny_bert, sentiment_files, tmp_path, caplog
):
    """A pooler whose weights are zero gives tanh(0.5) for every text; with a learning rate
    too small to change it, the first evaluation sees one vector and says so, once."""
    model = T.BertModel.from_pretrained(tiny_bert)
    with torch.no_grad():
        model.pooler.dense.weight.zero_()
        model.pooler.dense.bias.fill_(0.5)
    broken = tmp_path / "broken"
    model.save_pretrained(broken)
    T.AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(broken)
    out = tmp_path / "run"
    argv = ["train", "--model", str(broken), *files_args(sentiment_files), "--out", str(out)]
    with caplog.at_level(logging.WARNING):
        code = main(argv + QUICK + ["--lr", "1e-12", "--epochs", "2"])
    assert code == 0
    warned = [r.getMessage() for r in caplog.records if "same vector" in r.getMessage()]
    assert len(warned) == 1, warned  # at the first of the two evaluations only
    assert (
        "the pooled embedding (--pooling pooler) is the same vector for all 16 dev texts"
        in (warned[0])
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # the tiny BERT itself: varied, nothing to say
        code = main(["train", "--model", tiny_bert, *files_args(sentiment_files), "--out",
                     str(tmp_path / "fine"), *QUICK])  # fmt: skip
    assert code == 0 and "same vector" not in caplog.text
