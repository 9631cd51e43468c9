"""Tokenise once, batch by length, pad per batch: the input side of training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class EncodedSplit:
    """Token ids of one split, unpadded; labels as a tensor (long, or float for regression)."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: Tensor  # (N,)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64)


def encode(examples, tokenizer, max_length: int, regression: bool) -> EncodedSplit:
    """Tokenise `examples` (isobn.tasks.Example) once, truncated to `max_length`, no padding.

    Each text is first cut to `char_budget` characters, so the tokenizer's memory is bounded
    by the batch, not by the longest line (a 100 MB line is read as its first few thousand
    characters)."""
    budget = char_budget(tokenizer, max_length)
    texts = [clip(e.text, budget) for e in examples]
    pairs = [clip(e.text_pair, budget) for e in examples]
    has_pairs = any(p is not None for p in pairs)
    encoded = tokenizer(
        texts,
        [p or "" for p in pairs] if has_pairs else None,
        truncation="longest_first" if has_pairs else True,
        max_length=max_length,
        padding=False,
    )
    token_types = encoded.get("token_type_ids") if has_pairs else None
    dtype = torch.float32 if regression else torch.long
    labels = torch.tensor([e.label for e in examples], dtype=dtype)
    return EncodedSplit(list(encoded["input_ids"]), token_types, labels)


def tokenless(examples, encoded: EncodedSplit, tokenizer) -> list[tuple[int, str]]:
    """(index, text) of the examples whose text, or second text, tokenises to special
    tokens only: the tokenizer drops every character of it (a lone U+FFFD, private-use
    characters, ... that isobn.tasks.files.is_blank does not know), so each such text is the
    same empty input, as an empty text is. An unknown token counts as content.

    Suspects are the rows with fewer runs of content tokens (between special tokens) than
    texts; each of their texts is tokenised again, alone and uncut, so a text that a tiny
    --max-length cut to nothing is not counted."""
    special = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}

    def has_runs(ids: list[int], wanted: int) -> bool:
        """Whether `ids` hold `wanted` runs of content tokens (stops at the last one)."""
        count, after_special = 0, True
        for t in ids:
            if t in special:
                after_special = True
            elif after_special:
                count, after_special = count + 1, False
                if count >= wanted:
                    return True
        return False

    def no_content(text: str) -> bool:
        return all(t in special for t in tokenizer(text, add_special_tokens=False)["input_ids"])

    found = []
    for i, ids in enumerate(encoded.input_ids):
        pair = examples[i].text_pair
        texts = [examples[i].text] + ([pair] if pair is not None else [])
        if has_runs(ids, len(texts)):
            continue
        empty = [text for text in texts if no_content(text)]
        if empty:
            found.append((i, empty[0]))
    return found


def describe_text(text: str) -> str:
    """`'TEXT' (U+..., ...)`: a text clipped to 20 characters, with its first code points."""
    points = ", ".join(dict.fromkeys(f"U+{ord(c):04X}" for c in text[:8]))
    return f"{text[:20]!r} ({points})" if points else repr(text)


def check_tokens(split: str, examples, encoded: EncodedSplit, tokenizer) -> None:
    """A one-line UserError when texts of `split` tokenise to special tokens only
    (`tokenless`): each is the same empty input to the model."""
    from isobn.errors import UserError

    empty = tokenless(examples, encoded, tokenizer)
    if empty:
        raise UserError(
            f"{len(empty)} {split} text(s) become no token at all, e.g. "
            f"{describe_text(empty[0][1])}: the tokenizer drops every character of them, so "
            "the model sees the same empty input; fill or drop those rows"
        )


def char_budget(tokenizer, max_length: int) -> int | None:
    """The characters of a text that its first `max_length` tokens can cover: `max_length` x
    the longest token of the vocabulary, in characters (byte-level and SentencePiece tokens
    are no shorter than the text they cover). None when the tokenizer has no vocabulary to
    read (the text is then not cut).

    Exact for text whose every character belongs to some token; characters that the
    tokenizer drops (runs of whitespace, control characters, accents it strips) and words
    that become one unknown token whatever their length count against the budget too, so
    such a text may keep fewer than `max_length` tokens. A pair whose two texts are both cut
    keeps the same number of tokens, but the tokenizer gives an odd one to the longer text,
    judged on the cut texts: it may change sides."""
    try:
        vocabulary = tokenizer.get_vocab()
    except (AttributeError, NotImplementedError):
        return None
    longest = max((len(token) for token in vocabulary), default=0)
    return max_length * longest if longest else None


def clip(text: str | None, budget: int | None) -> str | None:
    """`text` cut to its first `budget` characters (None and short texts unchanged)."""
    if text is None or budget is None or len(text) <= budget:
        return text
    return text[:budget]


def length_grouped_batches(
    lengths: np.ndarray,
    batch_size: int,
    seed: int,
    epoch: int,
    group: int = 50,
    drop_last: bool = False,
) -> list[np.ndarray]:
    """Shuffled batches of similar lengths, a pure function of (seed, epoch).

    Indices are shuffled, cut into mega-batches of `group` x batch_size, sorted by length inside
    each, cut into batches, and the batch order is shuffled again (as HF's group_by_length), so
    padding is small while every epoch sees a fresh order. Resuming regenerates the same order.
    ceil(N / batch_size) batches; with `drop_last`, floor(N / batch_size) full ones: the last
    N mod batch_size indices of the shuffled order are left out (random ones, as a DataLoader's
    drop_last after a random sampler, not the shortest of a mega-batch).
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if drop_last:
        order = order[: len(order) - len(order) % batch_size]
    mega = batch_size * group
    batches = []
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Evaluation batches in decreasing length: least padding, deterministic."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(split: EncodedSplit, indices: np.ndarray, pad_id: int) -> dict[str, Tensor]:
    """Pad the rows `indices` of `split` to their longest length: input_ids, attention_mask
    (B, T), token_type_ids when the split has pairs, labels (B,)."""
    rows = [split.input_ids[i] for i in indices]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, row in enumerate(rows):
        input_ids[b, : len(row)] = torch.tensor(row)
        attention_mask[b, : len(row)] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if split.token_type_ids is not None:
        token_types = torch.zeros((len(rows), width), dtype=torch.long)
        for b, i in enumerate(indices):
            token_types[b, : len(split.token_type_ids[i])] = torch.tensor(split.token_type_ids[i])
        batch["token_type_ids"] = token_types
    batch["labels"] = split.labels[torch.as_tensor(indices)]
    return batch
