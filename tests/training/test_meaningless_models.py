"""Inputs that would train a meaningless model with exit 0: a causal decoder pooled at its
first token (refused), and a pooled embedding that is one vector for every text (warned)."""

from __future__ import annotations

import json
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


DECODERS = ["gpt2", "llama", "qwen2", "qwen3", "mistral", "mixtral", "gpt_neox", "opt", "bloom",
            "phi", "phi3", "gptj", "gpt_neo", "falcon", "gemma", "gemma2", "mpt", "codegen",
            "gpt_bigcode", "mamba", "rwkv", "ctrl", "olmo", "stablelm", "starcoder2", "biogpt",
            "xglm", "cohere"]  # fmt: skip


@pytest.mark.parametrize("model_type", DECODERS)
def test_which_models_are_causal_decoders(model_type):
    """Every decoder family transformers builds offline from a config, and the encoders
    (and XLNet, bidirectional as AutoModel builds it) that are not."""
    try:
        config = T.AutoConfig.for_model(model_type)
    except ValueError:
        pytest.skip(f"{model_type} is not in this transformers")
    assert is_causal_decoder(config)
    assert is_causal_decoder(T.BertConfig(is_decoder=True))
    for encoder in (T.BertConfig(), T.RobertaConfig(), T.XLNetConfig(), T.BartConfig()):
        assert not is_causal_decoder(encoder), type(encoder).__name__


def _seq2seq(kind: str, directory, vocab: int):
    """A tiny random T5 or BART, saved with a tokenizer as a pre-trained model looks."""
    if kind == "t5":
        config = T.T5Config(vocab_size=vocab, d_model=32, d_ff=64, num_layers=2, num_heads=2,
                            d_kv=16, decoder_start_token_id=0, pad_token_id=0)  # fmt: skip
    else:
        config = T.BartConfig(vocab_size=vocab, d_model=32, encoder_layers=2, decoder_layers=2,
                              encoder_attention_heads=2, decoder_attention_heads=2,
                              encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                              pad_token_id=0, bos_token_id=2, eos_token_id=3)  # fmt: skip
    torch.manual_seed(0)
    T.AutoModel.from_config(config).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("kind", ["t5", "bart"])
def test_an_encoder_decoder_model_is_refused_in_one_line(
    kind, tiny_bert, sentiment_files, tmp_path, capsys
):
    """T5 raised `ValueError: You must specify exactly one of input_ids or inputs_embeds`
    and BART a RuntimeError, after tokenising: AutoModel builds the whole seq2seq model."""
    tokenizer = T.AutoTokenizer.from_pretrained(tiny_bert)
    model = str(_seq2seq(kind, tmp_path / kind, len(tokenizer)))
    tokenizer.save_pretrained(model)
    capsys.readouterr()  # save_pretrained's progress bar
    data = files_args(sentiment_files)
    commands = [
        ["train", "--model", model, *data, "--out", str(tmp_path / "run"), *QUICK,
         "--pooling", "mean"],
        ["analyze", "--model", model, *data, "--out", str(tmp_path / "analysis"),
         "--pooling", "mean", "--max-examples", "16"],
    ]  # fmt: skip
    for argv in commands:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert f"error: {model} is an encoder-decoder model ({kind}): isobn fine-tunes" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "analysis").exists()


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


@pytest.mark.parametrize("text", ["\ufffd", "\ue000\ue001", "\ufffd \ue000"])
def test_a_text_the_tokenizer_drops_entirely_is_refused(
    text, tiny_bert, sentiment_files, tmp_path, capsys
):
    """Visible characters that BERT's tokenizer drops (the replacement character, private
    use): every such text is the same empty input, as an invisible one is."""
    from conftest import sentiment_rows, write_csv

    rows = [*sentiment_rows(24, 5), {"text": text, "label": "pos"}]
    train = write_csv(tmp_path / "train.csv", rows)
    out = tmp_path / "run"
    argv = ["train", "--model", tiny_bert, "--train", train, "--dev", sentiment_files["dev"]]
    assert main([*argv, "--out", str(out), *QUICK]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"error: 1 train text(s) become no token at all, e.g. {text!r} (U+" in err
    assert not out.exists()


def test_unknown_tokens_and_a_tiny_max_length_are_content(tiny_bert, tmp_path):
    """A text of unknown characters ([UNK]) is not refused, nor one that --max-length cuts
    to its special tokens: the check tokenises the suspects again, uncut."""
    from isobn.tasks.task import Example
    from isobn.training.data import check_tokens, encode

    tokenizer = T.AutoTokenizer.from_pretrained(tiny_bert)
    examples = [Example("\u4e2d\u6587", None, 0), Example("good movie", None, 1)]
    check_tokens("train", examples, encode(examples, tokenizer, 2, False), tokenizer)
    check_tokens("train", examples, encode(examples, tokenizer, 32, False), tokenizer)


def test_a_t5_encoder_alone_is_refused_in_one_line(tiny_bert, sentiment_files, tmp_path, capsys):
    """A T5EncoderModel saved alone says is_encoder_decoder false, but AutoModel builds the
    whole T5Model from its config: train (which left its --out behind) and analyze ended in
    `ValueError: You must specify exactly one of input_ids or inputs_embeds`."""
    tokenizer = T.AutoTokenizer.from_pretrained(tiny_bert)
    model = tmp_path / "t5-encoder"
    config = T.T5Config(vocab_size=len(tokenizer), d_model=32, d_ff=64, num_layers=2,
                        num_heads=2, d_kv=16, decoder_start_token_id=0, pad_token_id=0)  # fmt: skip
    torch.manual_seed(0)
    T.T5EncoderModel(config).save_pretrained(model)
    tokenizer.save_pretrained(model)
    capsys.readouterr()
    data = files_args(sentiment_files)
    for argv in (["train", "--model", str(model), *data, "--out", str(tmp_path / "run"),
                  *QUICK, "--pooling", "mean"],
                 ["analyze", "--model", str(model), *data, "--out", str(tmp_path / "analysis"),
                  "--pooling", "mean", "--max-examples", "16"]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert f"error: {model} is an encoder-decoder model (t5)" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "analysis").exists()


@pytest.mark.parametrize("pooling", [None, "cls", "pooler"])
def test_analyze_refuses_a_causal_decoder_pooled_at_its_first_token(
    tiny_gpt2, sentiment_files, tmp_path, capsys, pooling
):
    """analyze measured GPT-2 at its first token (its default, pooler, fell back to cls on a
    model without a pooler): the isotropy of nearly one vector, reported as any other."""
    out = tmp_path / "analysis"
    argv = ["analyze", "--model", tiny_gpt2, *files_args(sentiment_files), "--out", str(out),
            "--max-examples", "16"] + (["--pooling", pooling] if pooling else [])  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "gpt2 is a causal decoder: its first token sees only itself" in (err[0])
    ), err
    assert "use --pooling last" in err[0] and not out.exists()


def test_analyze_all_poolings_of_a_causal_decoder_are_last_and_mean(
    tiny_gpt2, sentiment_files, tmp_path, caplog
):
    out = tmp_path / "analysis"
    argv = ["analyze", "--model", tiny_gpt2, *files_args(sentiment_files), "--out", str(out),
            "--max-examples", "16", "--pooling", "all"]  # fmt: skip
    with caplog.at_level(logging.WARNING):
        assert main(argv) == 0
    payload = json.loads((out / "isotropy.json").read_text())
    assert sorted(payload["models"][0]["reports"]) == ["last", "mean"]
    assert "is a causal decoder: measuring last and mean" in caplog.text


def test_a_study_of_a_causal_decoder_pooled_at_its_first_token_is_refused_before_out(
    tiny_gpt2, sentiment_files, tmp_path, capsys
):
    """Each cell refused it after the study had bound --out (study.toml, locks, runs/)."""
    study = tmp_path / "decoder.toml"
    study.write_text(
        f'[study]\nmodel = "{tiny_gpt2}"\n[train]\nepochs = 1\nmax_length = 24\n'
        f'[tasks.sent]\ntrain_file = "{sentiment_files["train"]}"\n'
        f'dev_file = "{sentiment_files["dev"]}"\n[[block]]\ntasks = ["sent"]\nsizes = [24]\n'
        'methods = ["none"]\nseeds = [1]\n'
    )
    out = tmp_path / "out"
    assert main(["study", str(study), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"isobn study: error: {study}: gpt2 is a causal decoder: its "
                              "first token sees only itself, so --pooling pooler (the "
                              "default)"), err  # fmt: skip
    assert not out.exists()


def test_attach_refuses_a_bert_classifier_configured_as_a_decoder():
    """BERT with is_decoder=True attends causally: its pooler reads a [CLS] that sees only
    itself, the same vector for every text; attach normalised it without a word."""
    import isobn

    config = T.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=64, is_decoder=True)  # fmt: skip
    torch.manual_seed(0)
    model = T.BertForSequenceClassification(config).eval()
    first = model.bert(input_ids=torch.tensor([[2, 10, 11, 3]])).last_hidden_state[0, 0]
    other = model.bert(input_ids=torch.tensor([[2, 40, 50, 3]])).last_hidden_state[0, 0]
    assert torch.equal(first, other)  # why: token 0 sees only itself
    with pytest.raises(ValueError, match="with is_decoder=True in its config: its attention is"):
        isobn.attach(model)
    config.is_decoder = False
    isobn.attach(T.BertForSequenceClassification(config))  # the encoder: as ever


def test_a_second_text_the_tokenizer_drops_is_refused(tiny_bert, tmp_path, capsys):
    """check_tokens refused a pair only when both texts became no token: a hypothesis of
    U+FFFD alone trained as an empty second text (an empty text is refused)."""
    from conftest import pair_rows, write_jsonl

    rows = [*pair_rows(24, 3), {"premise": "the word is good", "hypothesis": "\ufffd",
                                "label": 1}]  # fmt: skip
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    dev = write_jsonl(tmp_path / "dev.jsonl", pair_rows(16, 4))
    out = tmp_path / "run"
    argv = ["train", "--model", tiny_bert, "--train", train, "--dev", dev, "--text-column",
            "premise", "--text-pair-column", "hypothesis", "--out", str(out), *QUICK]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "error: 1 train text(s) become no token at all, e.g. '\ufffd' (U+FFFD)" in err
    assert not out.exists()


def test_analyze_refuses_a_text_the_tokenizer_drops(tiny_bert, sentiment_files, tmp_path, capsys):
    """isobn train refuses it; analyze measured the empty input as one more embedding."""
    from conftest import sentiment_rows, write_csv

    dev = write_csv(tmp_path / "dev.csv", [*sentiment_rows(16, 7), {"text": "\ue000",
                                                                      "label": "pos"}])  # fmt: skip
    out = tmp_path / "analysis"
    argv = ["analyze", "--model", tiny_bert, "--train", sentiment_files["train"], "--dev", dev,
            "--split", "dev", "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "isobn analyze: error: 1 analysed text(s) become no token at all, e.g. '\\ue000' "
        "(U+E000): the tokenizer drops every character of them, so the model sees the same "
        "empty input; fill or drop those rows"
    )
    assert not out.exists()
