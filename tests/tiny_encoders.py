"""Tiny random encoders of every architecture isobn.attach supports, each with a tokenizer of
its own kind (WordPiece, Unigram or byte-level BPE) built in memory. Nothing is downloaded.

`ARCHS` maps a short name to how to build it; `sequence_classifier(arch)` gives the HF
`*ForSequenceClassification`, `write_encoder(arch, dir)` saves the bare encoder (AutoModel) and
its tokenizer the way a pre-trained model directory looks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers as T
from conftest import CHARS, FILLER, NEGATIVE, POSITIVE

WORDS = POSITIVE + NEGATIVE + FILLER + ["word", "is", "it"]
HIDDEN, LABELS = 32, 3


def _wordpiece_vocab(specials: list[str]) -> dict[str, int]:
    tokens = specials + WORDS + list(CHARS) + ["##" + c for c in CHARS]
    return {token: i for i, token in enumerate(tokens)}


def _unigram_vocab(specials: list[str]) -> list[tuple[str, float]]:
    pieces = [(s, 0.0) for s in specials]
    pieces += [("\u2581" + w, -1.0) for w in WORDS] + [("\u2581", -2.0)]
    return pieces + [(c, -3.0) for c in CHARS]


def _bpe_vocab_and_merges(specials: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level BPE that builds each space-prefixed word left to right ("\u0120" = space)."""
    tokens = [*specials, "\u0120", *CHARS]
    merges: dict[tuple[str, str], None] = {}
    for word in WORDS:
        piece = "\u0120"
        for char in word:
            merges[(piece, char)] = None
            piece += char
            tokens.append(piece)
    ordered = sorted(merges, key=lambda pair: len(pair[0]))  # shorter pieces merge first
    return {token: i for i, token in enumerate(dict.fromkeys(tokens))}, ordered


def _bert_tok():
    return T.BertTokenizer(vocab=_wordpiece_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))


def _distilbert_tok():
    vocab = _wordpiece_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    return T.DistilBertTokenizer(vocab=vocab)


def _mpnet_tok():
    return T.MPNetTokenizer(vocab=_wordpiece_vocab(["<s>", "<pad>", "</s>", "[UNK]", "<mask>"]))


def _albert_tok():
    return T.AlbertTokenizer(vocab=_unigram_vocab(["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]))


def _deberta_v2_tok():
    vocab = _unigram_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    return T.DebertaV2Tokenizer(vocab=vocab, unk_id=1)


def _xlmr_tok(cls=T.XLMRobertaTokenizer):
    return cls(vocab=_unigram_vocab(["<s>", "<pad>", "</s>", "<unk>", "<mask>"]))


def _roberta_tok():
    vocab, merges = _bpe_vocab_and_merges(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    return T.RobertaTokenizer(vocab=vocab, merges=merges, add_prefix_space=True)


def _modernbert_tok():
    """A generic fast tokenizer ([CLS] ... [SEP], no token types), as ModernBERT ships."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = _wordpiece_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return T.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "attention_mask"],
    )


def _common(tokenizer) -> dict:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * HIDDEN,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=LABELS,
    )


def _deberta_v2_config(tokenizer, v3: bool):
    return T.DebertaV2Config(
        **_common(tokenizer),
        relative_attention=True,  # the settings of microsoft/deberta-v3-* and -v2-xlarge
        pos_att_type=["p2c", "c2p"],
        position_buckets=16,
        max_relative_positions=-1,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        position_biased_input=False,
        conv_kernel_size=0 if v3 else 3,  # v2 adds a convolution to the first layer
    )


def _modernbert_config(tokenizer, pooling: str):
    ids = {k: tokenizer.convert_tokens_to_ids(t) for k, t in (("cls", "[CLS]"), ("sep", "[SEP]"))}
    return T.ModernBertConfig(
        **_common(tokenizer),
        global_attn_every_n_layers=2,
        local_attention=8,
        classifier_pooling=pooling,
        cls_token_id=ids["cls"],
        sep_token_id=ids["sep"],
        bos_token_id=ids["cls"],
        eos_token_id=ids["sep"],
    )


def _distilbert_config(tokenizer):
    common = _common(tokenizer)
    return T.DistilBertConfig(
        vocab_size=common["vocab_size"],
        dim=HIDDEN,
        n_layers=2,
        n_heads=2,
        hidden_dim=2 * HIDDEN,
        pad_token_id=common["pad_token_id"],
        num_labels=LABELS,
    )


@dataclass(frozen=True)
class Arch:
    tokenizer: Callable[[], object]
    config: Callable[[object], object]  # tokenizer -> HF config
    classifier: str  # the *ForSequenceClassification class name
    site: str  # where isobn.attach puts IsoBN
    has_pooler: bool  # AutoModel of this config returns pooler_output
    # the module whose input is the vector IsoBN must see, and whether it is token 0 of it
    reference: tuple[str, bool] = ("classifier", False)


def _simple(config_cls, **extra):
    return lambda tok: config_cls(**_common(tok), **extra)


ARCHS: dict[str, Arch] = {
    "bert": Arch(
        _bert_tok, _simple(T.BertConfig), "BertForSequenceClassification", "dropout", True
    ),
    "albert": Arch(
        _albert_tok,
        _simple(T.AlbertConfig, embedding_size=16),
        "AlbertForSequenceClassification",
        "dropout",
        True,
    ),
    "deberta-v2": Arch(
        _deberta_v2_tok,
        lambda tok: _deberta_v2_config(tok, v3=False),
        "DebertaV2ForSequenceClassification",
        "dropout",
        False,
    ),
    "deberta-v3": Arch(
        _deberta_v2_tok,
        lambda tok: _deberta_v2_config(tok, v3=True),
        "DebertaV2ForSequenceClassification",
        "dropout",
        False,
    ),
    "modernbert": Arch(
        _modernbert_tok,
        lambda tok: _modernbert_config(tok, "cls"),
        "ModernBertForSequenceClassification",
        "drop",
        False,
    ),
    "modernbert-mean": Arch(
        _modernbert_tok,
        lambda tok: _modernbert_config(tok, "mean"),
        "ModernBertForSequenceClassification",
        "drop",
        False,
    ),
    "distilbert": Arch(
        _distilbert_tok,
        _distilbert_config,
        "DistilBertForSequenceClassification",
        "pre_classifier",
        False,
        ("pre_classifier", False),
    ),
    "roberta": Arch(
        _roberta_tok,
        _simple(T.RobertaConfig),
        "RobertaForSequenceClassification",
        "classifier",
        True,
        ("classifier", True),
    ),
    "xlm-roberta": Arch(
        _xlmr_tok,
        _simple(T.XLMRobertaConfig),
        "XLMRobertaForSequenceClassification",
        "classifier",
        True,
        ("classifier", True),
    ),
    "camembert": Arch(
        lambda: _xlmr_tok(T.CamembertTokenizer),
        _simple(T.CamembertConfig),
        "CamembertForSequenceClassification",
        "classifier",
        True,
        ("classifier", True),
    ),
    "mpnet": Arch(
        _mpnet_tok,
        _simple(T.MPNetConfig),
        "MPNetForSequenceClassification",
        "classifier",
        True,
        ("classifier", True),
    ),
    "electra": Arch(
        _bert_tok,
        _simple(T.ElectraConfig, embedding_size=16),
        "ElectraForSequenceClassification",
        "classifier",
        False,
        ("classifier", True),
    ),
}


# The names the Hugging Face guide's tables give the architectures -> the tiny configs that test
# them ("DeBERTa-v2/v3": one row of the Deploying table for both)
GUIDE_NAMES: dict[str, list[str]] = {
    "BERT": ["bert"],
    "ALBERT": ["albert"],
    "DeBERTa-v2": ["deberta-v2"],
    "DeBERTa-v3": ["deberta-v3"],
    "DeBERTa-v2/v3": ["deberta-v2", "deberta-v3"],
    "ModernBERT": ["modernbert", "modernbert-mean"],
    "DistilBERT": ["distilbert"],
    "RoBERTa": ["roberta"],
    "XLM-R": ["xlm-roberta"],
    "CamemBERT": ["camembert"],
    "MPNet": ["mpnet"],
    "ELECTRA": ["electra"],
}


def tokenizer(arch: str):
    return ARCHS[arch].tokenizer()


def sequence_classifier(arch: str, seed: int = 0):
    """The tiny random `*ForSequenceClassification` of `arch` (eval mode as HF builds it)."""
    spec = ARCHS[arch]
    config = spec.config(spec.tokenizer())
    torch.manual_seed(seed)
    return getattr(T, spec.classifier)(config)


def write_encoder(arch: str, directory: Path, seed: int = 0) -> Path:
    """Save the bare encoder (AutoModel) of `arch` and its tokenizer, as a pre-trained dir."""
    spec = ARCHS[arch]
    tok = spec.tokenizer()
    config = spec.config(tok)
    torch.manual_seed(seed)
    T.AutoModel.from_config(config).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory
