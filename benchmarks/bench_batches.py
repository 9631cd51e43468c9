"""Real-token share of training batches: how much of what a training loop computes is padding.

Deterministic (no timing: figures do not depend on the machine or its load). The mr training
split, tokenised as `isobn train` does (max length 128), at several training sizes (the
stratified subsamples of `isobn train --max-train N`), batch 32. For every way of forming an
epoch's batches: real tokens / computed (padded) tokens, and the number of batches (steps).
Randomised strategies are drawn 10 times (epochs 0-9 of seed 42, or torch generator seeds
0-9 for Trainer's sampler): the median share, and its range when the draws differ.

* isobn, group G: isobn.training.data.length_grouped_batches (shuffle, mega-batches of G x 32 sorted
  by length, batches in shuffled order); G = 50 is what `isobn train` uses;
* isobn, global sort: the same with one mega-batch holding the whole training set;
* Trainer group_by_length: transformers' get_length_grouped_indices, as its
  LengthGroupedSampler calls it (mega-batches of min(N // (4 x 32), 50) x 32, the longest
  example's batch first), cut into batches of 32 as its dataloader does;
* random: shuffled batches, padded per batch (Trainer's random sampler with dynamic padding);
* padded to 128: run_glue's defaults (every batch 32 x 128);
* token budget T: fairseq's max_tokens (the training set sorted by length, cut greedily into
  batches of at most T padded tokens, in shuffled order): batch sizes vary, so training
  changes; shown for comparison only (isobn has no such setting).

    .venv/bin/python benchmarks/bench_batches.py [--quick]
"""

from __future__ import annotations

import common
import models
import numpy as np
import timing
import torch

BATCH = 32
MAX_LENGTH = 128
SIZES = (128, 1200, 2000, None)  # None: the whole training split
GROUPS = (50, 100, 200)
TOKEN_BUDGETS = (512, 1024, 2048)  # 1024 = 32 x 32, the batch of 32 at mr's typical length
DRAWS = 10


def real_share(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Real tokens / padded tokens of `batches` (index arrays into `lengths`)."""
    padded = sum(len(b) * int(lengths[b].max()) for b in batches)
    return float(lengths.sum()) / padded


def trainer_batches(lengths: np.ndarray, seed: int) -> list[np.ndarray]:
    """The batches of Trainer's LengthGroupedSampler with its generator seeded by `seed`."""
    from transformers.trainer_pt_utils import get_length_grouped_indices

    generator = torch.Generator().manual_seed(seed)
    order = np.asarray(get_length_grouped_indices(lengths.tolist(), BATCH, generator=generator))
    return [order[i : i + BATCH] for i in range(0, len(order), BATCH)]


def random_batches(lengths: np.ndarray, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(lengths))
    return [order[i : i + BATCH] for i in range(0, len(order), BATCH)]


def token_budget_batches(lengths: np.ndarray, max_tokens: int, seed: int) -> list[np.ndarray]:
    """fairseq's batch_by_size over the training set sorted by length (ties shuffled): each
    batch as many rows as keep rows x longest length <= max_tokens; batch order shuffled."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    order = order[np.argsort(-lengths[order], kind="stable")]
    batches, start = [], 0
    while start < len(order):
        rows = max(1, max_tokens // int(lengths[order[start]]))  # the batch's longest row first
        batches.append(order[start : start + rows])
        start += rows
    return [batches[i] for i in rng.permutation(len(batches))]


def strategies(n: int) -> dict:
    """name -> function(lengths, draw) returning an epoch's batches."""
    from isobn.training.data import length_grouped_batches

    ways = {
        f"isobn, group {g}{' (today)' if g == 50 else ''}": (
            lambda lengths, draw, g=g: length_grouped_batches(lengths, BATCH, 42, draw, g)
        )
        for g in GROUPS
    }
    ways["isobn, global sort"] = lambda lengths, draw: length_grouped_batches(
        lengths, BATCH, 42, draw, group=-(-n // BATCH)
    )
    ways["Trainer group_by_length"] = trainer_batches
    ways["random (dynamic padding)"] = random_batches
    for budget in TOKEN_BUDGETS:
        ways[f"token budget {budget}"] = lambda lengths, draw, b=budget: token_budget_batches(
            lengths, b, draw
        )
    return ways


def run(settings: common.Settings) -> dict:
    common.header("Real-token share of training batches (deterministic: no timing)")
    from isobn.tasks.sampling import subsample
    from isobn.training.data import encode
    from isobn.training.pretrained import load_tokenizer

    task = models.load_mr(None, 16)
    tokenizer = load_tokenizer(settings.model_dir())
    examples = task.splits["train"]
    sizes = (128, 1200) if settings.quick else SIZES
    results: dict = {}
    headings = ["batches of 32 (unless stated)"]
    columns: dict[str, list[str]] = {}
    for size in sizes:
        chosen = subsample(examples, size, 0, False)  # = load_task("mr", max_train=size)
        lengths = encode(chosen, tokenizer, MAX_LENGTH, False).lengths
        n = len(lengths)
        headings.append(f"N={n}")
        results[n] = {}
        for name, make in strategies(n).items():
            draws = [make(lengths, draw) for draw in range(DRAWS)]
            shares = [real_share(lengths, batches) for batches in draws]
            steps = sorted({len(batches) for batches in draws})
            mid, low, high = timing.median(shares), min(shares), max(shares)
            results[n][name] = {"share": mid, "range": (low, high), "steps": steps}
            spread = f" ({low:.1%}-{high:.1%})" if high - low >= 5e-4 else ""
            cell = f"{mid:.1%}{spread}, {'/'.join(map(str, steps))} steps"
            columns.setdefault(name, []).append(cell)
        padded = float(lengths.sum()) / (n * MAX_LENGTH)
        results[n]["padded to 128"] = {"share": padded, "steps": [-(-n // BATCH)]}
        columns.setdefault("padded to 128 (run_glue)", []).append(
            f"{padded:.1%}, {-(-n // BATCH)} steps"
        )
    common.table([[name, *cells] for name, cells in columns.items()], headings)
    print(
        f"  real tokens / padded tokens, median of {DRAWS} draws (range when they differ); "
        f"mr training split tokenised at max length {MAX_LENGTH}; N = training sentences"
    )
    return results


if __name__ == "__main__":
    common.run_standalone(run, __doc__)
