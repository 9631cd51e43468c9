"""Benchmarks 2 and 3: training throughput of `isobn train` against Hugging Face's Trainer, and
IsoBN's overhead inside our loop (--method none against --method isobn).

Same model directory, data (an mr subset), batch size 32, max length 128, AdamW (lr 2e-5,
weight decay 0.01, clipping at 1.0), linear schedule with 10% warm-up, seed 42, one epoch, no
evaluation during training, float32. Arms, one sample each per round:

* isobn train, method isobn / none: isobn.train.train(TrainConfig(...)) in-process; the figure
  is its train_samples_per_second (time of collate + forward + backward + optimizer steps).
* Trainer, run_glue defaults: AutoModelForSequenceClassification + isobn.attach, inputs padded
  to max_length 128 at tokenisation, default_data_collator, random sampler.
* Trainer, dynamic padding: the same model, unpadded inputs, DataCollatorWithPadding and
  train_sampling_strategy="group_by_length" (transformers 5's name for group_by_length=True).

What is timed: the training loop, the same span for both. isobn train: its
train_samples_per_second (sum over batches of collate + forward + backward + clip + optimizer
step). Trainer: sentences / time from on_train_begin to on_train_end (a callback; the loop
after Trainer has built its optimizer, scheduler and dataloader and run accelerate.prepare,
data loading and collation included). Excluded for every arm: model loading, tokenisation,
building the model's optimizer and the Trainer, and isobn train's end-of-run evaluation and
checkpoint writing (the Trainer arms evaluate and save nothing). The whole trainer.train()
call (its set-up included) is printed too. Trainer keeps its own defaults otherwise (optim
adamw_torch_fused, dataloader settings).

    .venv/bin/python benchmarks/bench_train.py [--quick] [--gpu] [--train-size N]
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import time

import common
import models
import numpy as np
import timing
import torch

BATCH = 32
MAX_LENGTH = 128
EVAL_ROWS = 16  # dev/test rows of isobn train's end-of-run evaluation (untimed)
_counter = itertools.count()


def isobn_arm(settings: common.Settings, files: dict, method: str, adamw: dict | None = None):
    """isobn.train.train() as shipped, on the mr subset written as files (models.task_files);
    with `adamw` (e.g. models.PREVIOUS_ADAMW), the same call while torch.optim.AdamW is
    swapped for a subclass that forces those options, to measure an optimizer setting of
    train.py end to end without editing src."""
    from isobn.train import TrainConfig, train

    def arm() -> float:
        out = settings.tmp / f"isobn-train-{method}-{next(_counter)}"
        cfg = TrainConfig(
            out=str(out),
            train_file=files["train"],
            dev_file=files["dev"],
            test_file=files["test"],
            model=settings.model_dir(),
            method=method,
            epochs=1,
            batch_size=BATCH,
            max_length=MAX_LENGTH,
            learning_rate=2e-5,
            weight_decay=0.01,
            warmup_ratio=0.1,
            seed=42,
            isotropy_examples=0,
            log_every_steps=10**6,
            cpu=not settings.cuda,
        )
        try:
            with forced_adamw(adamw) if adamw else contextlib.nullcontext():
                result = train(cfg)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        return result["train_samples_per_second"]

    return arm


@contextlib.contextmanager
def forced_adamw(options: dict):
    """Inside this block torch.optim.AdamW(...) builds an AdamW with `options` overriding the
    caller's fused / foreach arguments."""
    original = torch.optim.AdamW

    class ForcedAdamW(original):
        def __init__(self, params, *args, **kwargs):
            kwargs.update(options)
            super().__init__(params, *args, **kwargs)

    torch.optim.AdamW = ForcedAdamW
    try:
        yield
    finally:
        torch.optim.AdamW = original


def loop_timer_class():
    from transformers import TrainerCallback

    class LoopTimer(TrainerCallback):
        """Times Trainer's loop: on_train_begin (after the optimizer, scheduler, dataloader and
        accelerate are set up) to on_train_end, the span that isobn train's figure covers."""

        def __init__(self, device) -> None:
            self.device, self.begin, self.end = device, 0.0, 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            timing.sync(self.device)
            self.begin = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            timing.sync(self.device)
            self.end = time.perf_counter()

    return LoopTimer


def trainer_arm(settings: common.Settings, task, tokenizer, padded: bool, norm: str):
    from accelerate.utils import set_seed
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )

    import isobn

    LoopTimer = loop_timer_class()
    examples = task.splits["train"]
    texts, labels = [e.text for e in examples], [int(e.label) for e in examples]
    if padded:  # run_glue: pad_to_max_length=True by default
        encoded = tokenizer(texts, padding="max_length", max_length=MAX_LENGTH, truncation=True)
        collator = default_data_collator
    else:
        encoded = tokenizer(texts, max_length=MAX_LENGTH, truncation=True)
        collator = DataCollatorWithPadding(tokenizer)
    rows = [
        {**{k: v[i] for k, v in encoded.items()}, "labels": labels[i]} for i in range(len(texts))
    ]

    def arm() -> float:
        set_seed(42)
        model = AutoModelForSequenceClassification.from_pretrained(
            settings.model_dir(), num_labels=2
        )
        if norm == "isobn":
            isobn.attach(model)  # IsoBN defaults = TrainConfig defaults (beta 0.5, momentum 0.05)
        args = TrainingArguments(
            output_dir=str(settings.tmp / f"trainer-{next(_counter)}"),
            per_device_train_batch_size=BATCH,
            learning_rate=2e-5,
            weight_decay=0.01,
            max_grad_norm=1.0,
            lr_scheduler_type="linear",
            warmup_steps=0.1,  # a float below 1 is a ratio of the training steps
            num_train_epochs=1,
            seed=42,
            train_sampling_strategy="random" if padded else "group_by_length",
            eval_strategy="no",
            save_strategy="no",
            report_to="none",
            use_cpu=not settings.cuda,
            disable_tqdm=True,
        )
        trainer = common.silent_trainer(
            Trainer(
                model=model,
                args=args,
                train_dataset=rows,
                data_collator=collator,
                processing_class=tokenizer,
            )
        )
        timer = LoopTimer(settings.device)
        trainer.add_callback(timer)
        call_seconds = timing.time_call(trainer.train, settings.device)
        shutil.rmtree(args.output_dir, ignore_errors=True)
        whole_call.append(len(rows) / call_seconds)
        return len(rows) / (timer.end - timer.begin)

    whole_call: list[float] = []
    arm.whole_call = whole_call  # samples/s of the whole trainer.train() call, per round
    return arm


def batch_shapes(lengths: np.ndarray) -> dict[str, list[tuple[int, int]]]:
    """(rows, padded length) of each training batch: dynamic (ours; Trainer's group_by_length
    builds the same batches while the subset fits one mega-batch of 50 x 32) and padded."""
    from isobn.data import length_grouped_batches

    dynamic = [
        (len(b), int(lengths[b].max())) for b in length_grouped_batches(lengths, BATCH, 42, 0)
    ]
    n = len(lengths)
    padded = [(min(BATCH, n - i), MAX_LENGTH) for i in range(0, n, BATCH)]
    return {"dynamic": dynamic, "padded": padded}


def collate_cost(task, tokenizer, lengths) -> float:
    """Milliseconds of isobn.data.collate per training batch (median over the epoch's)."""
    from isobn.data import collate, encode, length_grouped_batches

    split = encode(task.splits["train"], tokenizer, MAX_LENGTH, False)
    batches = length_grouped_batches(lengths, BATCH, 42, 0)
    times = []
    for indices in batches * 20:
        start = time.perf_counter()
        collate(split, indices, tokenizer.pad_token_id or 0)
        times.append(time.perf_counter() - start)
    return timing.median(times) * 1e3


ARMS = {
    "isobn": "isobn train --method isobn",
    "isobn_none": "isobn train --method none",
    "isobn_unfused": "isobn train --method isobn, AdamW fused=False (before 8a9a662)",
    "trainer_padded": "Trainer + IsoBN, run_glue defaults (pad to 128)",
    "trainer_dynamic": "Trainer + IsoBN, dynamic padding + group_by_length",
}


def run(settings: common.Settings) -> dict:
    common.header(
        "2./3. Training throughput: isobn train vs HF Trainer; IsoBN overhead in our loop"
    )
    from isobn.data import encode
    from isobn.model import load_tokenizer

    task = models.load_mr(settings.train_size, EVAL_ROWS)
    files = models.task_files(task, settings.tmp / "mr-files")
    tokenizer = load_tokenizer(settings.model_dir())
    lengths = encode(task.splits["train"], tokenizer, MAX_LENGTH, False).lengths
    shapes = batch_shapes(lengths)
    n_params, layers, hidden = models.model_dims(settings)

    def per_token(seq: int) -> float:
        return models.train_flops_per_token(n_params, layers, hidden, seq)

    flops = {kind: models.batch_flops(s, per_token) for kind, s in shapes.items()}
    tokens = {kind: sum(r * w for r, w in s) for kind, s in shapes.items()}
    kind_of = {
        "isobn": "dynamic",
        "isobn_none": "dynamic",
        "isobn_unfused": "dynamic",
        "trainer_padded": "padded",
        "trainer_dynamic": "dynamic",
    }

    arms = {
        "isobn": isobn_arm(settings, files, "isobn"),
        "isobn_none": isobn_arm(settings, files, "none"),
        "isobn_unfused": isobn_arm(settings, files, "isobn", adamw=models.PREVIOUS_ADAMW),
        "trainer_padded": trainer_arm(settings, task, tokenizer, padded=True, norm="isobn"),
        "trainer_dynamic": trainer_arm(settings, task, tokenizer, padded=False, norm="isobn"),
    }
    samples = timing.interleaved(arms, settings.target_repeats)

    n = len(lengths)
    results = {"train_sentences": n, "real_tokens": int(lengths.sum()), "arms": {}}
    rows = []
    for name, label in ARMS.items():
        kind = kind_of[name]
        rate = timing.median(samples[name])  # samples/s
        seconds = n / rate
        achieved = flops[kind] / seconds
        results["arms"][name] = {
            "label": label,
            "samples_per_s": rate,
            "samples": samples[name],
            "padded_tokens": tokens[kind],
            "flops_per_epoch": flops[kind],
            "achieved_flops": achieved,
        }
        rows.append(
            [
                label,
                f"{rate:.2f}",
                " ".join(f"{s:.2f}" for s in samples[name]),
                f"{tokens[kind] / seconds:.0f}",
                f"{lengths.sum() / tokens[kind]:.0%}",
                f"{achieved / 1e9:.1f}",
            ]
        )
    common.table(
        rows,
        ["arm", "samples/s", "rounds", "tokens/s", "real/padded", "GFLOP/s"],
    )
    print(
        f"  {n} mr sentences ({lengths.sum()} real tokens), batch {BATCH}, max length "
        f"{MAX_LENGTH}, 1 epoch, median of {settings.target_repeats} interleaved rounds"
    )
    for name in ("trainer_padded", "trainer_dynamic"):
        whole = arms[name].whole_call
        results["arms"][name]["whole_call_samples_per_s"] = timing.median(whole)
        print(
            f"  {ARMS[name]}: whole trainer.train() call, set-up included: "
            f"{timing.median(whole):.2f} samples/s"
        )
    collate_ms = collate_cost(task, tokenizer, lengths)
    step_ms = 1e3 * BATCH / timing.median(samples["isobn"])
    results["collate_ms"] = collate_ms
    print(
        f"  isobn.data.collate of one batch of {BATCH}: {collate_ms:.2f} ms "
        f"({collate_ms / step_ms:.2%} of an average isobn step of {step_ms:.0f} ms)"
    )
    pairs = {
        "vs_trainer_padded": ("isobn", "trainer_padded"),
        "vs_trainer_dynamic": ("isobn", "trainer_dynamic"),
        "trainer_dynamic_vs_padded": ("trainer_dynamic", "trainer_padded"),
        "fused_vs_unfused": ("isobn", "isobn_unfused"),
        "unfused_vs_trainer_padded": ("isobn_unfused", "trainer_padded"),
        "unfused_vs_trainer_dynamic": ("isobn_unfused", "trainer_dynamic"),
        "none_vs_isobn": ("isobn_none", "isobn"),
    }
    results["paired_medians"] = {
        key: timing.paired_median(samples[a], samples[b]) for key, (a, b) in pairs.items()
    }
    ratios = {
        "vs_trainer_padded": timing.ratio(samples["isobn"], samples["trainer_padded"]),
        "vs_trainer_dynamic": timing.ratio(samples["isobn"], samples["trainer_dynamic"]),
        "none_vs_isobn": timing.ratio(samples["isobn_none"], samples["isobn"]),
        "fused_vs_unfused": timing.ratio(samples["isobn"], samples["isobn_unfused"]),
        "unfused_vs_trainer_padded": timing.ratio(
            samples["isobn_unfused"], samples["trainer_padded"]
        ),
        "unfused_vs_trainer_dynamic": timing.ratio(
            samples["isobn_unfused"], samples["trainer_dynamic"]
        ),
        "trainer_dynamic_vs_padded": timing.ratio(
            samples["trainer_dynamic"], samples["trainer_padded"]
        ),
    }
    results["ratios"] = ratios
    for key, text in (
        ("vs_trainer_padded", "isobn / Trainer run_glue defaults"),
        ("vs_trainer_dynamic", "isobn / Trainer dynamic padding"),
        ("trainer_dynamic_vs_padded", "Trainer dynamic / Trainer run_glue defaults"),
        ("fused_vs_unfused", "isobn (fused AdamW) / isobn with fused=False"),
        ("unfused_vs_trainer_padded", "isobn fused=False / Trainer run_glue defaults"),
        ("unfused_vs_trainer_dynamic", "isobn fused=False / Trainer dynamic padding"),
    ):
        paired = results["paired_medians"][key]
        print(f"  {text + ':':48} {timing.format_ratio(ratios[key])}, paired median {paired:.3f}x")
    none_vs = ratios["none_vs_isobn"]
    overhead = tuple(100 * (v - 1) for v in none_vs)
    results["isobn_overhead_pct"] = overhead[0]
    paired = 100 * (results["paired_medians"]["none_vs_isobn"] - 1)
    print(
        f"  3. IsoBN overhead in our loop (samples/s none / isobn - 1): "
        f"{timing.format_ratio(overhead, '%')}, paired median {paired:.2f}%"
    )
    return results


def main() -> None:
    common.run_standalone(run, __doc__)


if __name__ == "__main__":
    main()
