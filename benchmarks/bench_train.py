"""Benchmarks 2 and 3: training throughput of `isobn train` against Hugging Face's Trainer, and
IsoBN's overhead inside our loop (--method none against --method isobn).

Same model directory, data (a seeded, stratified mr subset, 1,200 sentences unless
--train-size: big enough that set-up is a few percent of a whole call), batch 32, max length
128, AdamW (lr 2e-5, weight decay 0.01, clipping at 1.0), linear schedule with 10% warm-up,
seed 42, one epoch, no evaluation during training, float32 (Settings.precision: bf16 autocast
in both arms). Arms (--train-arms picks; by
default isobn, isobn_none and trainer_dynamic, all five with --quick), one sample each per
round:

* isobn, isobn_none: isobn.training.train.train(TrainConfig(...)) in-process, method isobn / none;
* isobn_unfused: the same with AdamW forced to fused=False (train.py before 8a9a662);
* trainer_padded: Trainer, run_glue defaults: AutoModelForSequenceClassification +
  isobn.attach, inputs padded to max_length 128 at tokenisation, default_data_collator,
  random sampler;
* trainer_dynamic: the same model, unpadded inputs, DataCollatorWithPadding and
  train_sampling_strategy="group_by_length" (transformers 5's name for group_by_length=True).

Two figures per arm and round, both sentences / seconds:

* per step (the loop): isobn train's train_samples_per_second (the sum over its batches of
  collate + forward + backward + clip + optimizer step); Trainer: on_train_begin to
  on_train_end (a callback: its loop after the optimizer, scheduler, dataloader and
  accelerate are set up; data loading and collation included);
* whole call: what a user runs, from text to a trained model. isobn: train(cfg) from the CSV
  files (reading, tokenising, loading the model, the epoch, evaluating 16 dev and 16 test
  rows, writing best/ and last/); Trainer: tokenising, from_pretrained + isobn.attach,
  Trainer(...) and trainer.train() (it evaluates and saves nothing).

Share outside the loop = 1 - loop seconds / whole-call seconds, per arm, split into before
the loop (set-up) and after it (isobn: evaluation and checkpoints; for isobn the moments
train_epoch is entered and left, recorded by wrapping it). Real-token share = real tokens
/ computed (padded) tokens of the batches each arm forms: isobn's from
isobn.training.data.length_grouped_batches (the pure function of seed and epoch that train_epoch
calls), Trainer's counted while its collator forms them in the timed call (the sum of
attention_mask per batch), checked identical in every round. Trainer keeps its own defaults
otherwise (optim adamw_torch_fused, dataloader settings).

    .venv/bin/python benchmarks/bench_train.py [--quick] [--gpu] [--train-size N]
        [--train-arms isobn trainer_dynamic ...]
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import time
from dataclasses import dataclass, field

import common
import models
import numpy as np
import timing
import torch

BATCH = 32
MAX_LENGTH = 128
EVAL_ROWS = 16  # dev/test rows of isobn train's end-of-run evaluation
SETUP_LIMIT = 0.05  # set-up share of a whole call above which per-step figures mislead
_counter = itertools.count()

ARMS = {
    "isobn": "isobn train --method isobn",
    "isobn_none": "isobn train --method none",
    "isobn_unfused": "isobn train --method isobn, AdamW fused=False (before 8a9a662)",
    "trainer_padded": "Trainer + IsoBN, run_glue defaults (pad to 128)",
    "trainer_dynamic": "Trainer + IsoBN, dynamic padding + group_by_length",
}
DEFAULT_ARMS = ("isobn", "isobn_none", "trainer_dynamic")
# (numerator, denominator, text) of the printed ratios, where both arms ran
PAIRS = {
    "vs_trainer_dynamic": ("isobn", "trainer_dynamic", "isobn / Trainer dynamic padding"),
    "vs_trainer_padded": ("isobn", "trainer_padded", "isobn / Trainer run_glue defaults"),
    "trainer_dynamic_vs_padded": (
        "trainer_dynamic",
        "trainer_padded",
        "Trainer dynamic / Trainer run_glue defaults",
    ),
    "fused_vs_unfused": ("isobn", "isobn_unfused", "isobn (fused AdamW) / isobn fused=False"),
    "none_vs_isobn": ("isobn_none", "isobn", "isobn --method none / --method isobn"),
}


@dataclass
class Batches:
    """The batches of one epoch as computed: (rows, padded length) each, and real tokens."""

    shapes: list[tuple[int, int]] = field(default_factory=list)
    real: int = 0

    def add(self, rows: int, width: int, real: int) -> None:
        self.shapes.append((rows, width))
        self.real += real

    @property
    def padded(self) -> int:
        return sum(rows * width for rows, width in self.shapes)

    @property
    def share(self) -> float:
        return self.real / self.padded

    @classmethod
    def of(cls, lengths: np.ndarray, batches: list[np.ndarray]) -> Batches:
        """The batches `batches` (index arrays) of sequences of `lengths`, padded per batch."""
        out = cls()
        for b in batches:
            out.add(len(b), int(lengths[b].max()), int(lengths[b].sum()))
        return out


@dataclass
class Record:
    """What an arm measured besides its per-step samples/s: one entry per round."""

    whole_call: list[float] = field(default_factory=list)  # samples/s of the whole call
    setup_share: list[float] = field(default_factory=list)  # 1 - loop / whole call
    before: list[float] = field(default_factory=list)  # share of the call before the loop
    after: list[float] = field(default_factory=list)  # share of the call after the loop
    batches: Batches | None = None
    batches_vary: bool = False  # Trainer formed other batches in another round


def isobn_arm(
    settings: common.Settings,
    files: dict,
    method: str,
    n: int,
    record: Record,
    adamw: dict | None = None,
):
    """isobn.training.train.train() as shipped, on the mr subset written as files
    (models.task_files);
    with `adamw` (e.g. models.PREVIOUS_ADAMW), the same call while torch.optim.AdamW is
    swapped for a subclass that forces those options, to measure an optimizer setting of
    train.py end to end without editing src."""
    from isobn.training.train import TrainConfig, train

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
            precision=settings.precision,
        )
        result = {}

        def call() -> None:
            result.update(train(cfg))

        try:
            with forced_adamw(adamw) if adamw else contextlib.nullcontext(), epoch_span() as span:
                start = time.perf_counter()
                seconds = timing.time_call(call, settings.device)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        rate = result["train_samples_per_second"]
        record.whole_call.append(n / seconds)
        record.setup_share.append(1 - (n / rate) / seconds)
        record.before.append((span["enter"] - start) / seconds)
        record.after.append(max(0.0, start + seconds - span["exit"]) / seconds)
        return rate

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


@contextlib.contextmanager
def epoch_span():
    """Inside this block isobn.training.train's train_epoch records when it is first entered and
    last
    left (perf_counter) in the dict yielded: what precedes and follows the loop."""
    import isobn.training.train

    original, span = isobn.training.train.train_epoch, {}

    def timed(run):
        span.setdefault("enter", time.perf_counter())
        try:
            return original(run)
        finally:
            span["exit"] = time.perf_counter()

    isobn.training.train.train_epoch = timed
    try:
        yield span
    finally:
        isobn.training.train.train_epoch = original


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


class CountingCollator:
    """A data collator that counts the batches it forms (rows, padded length, real tokens =
    the sum of attention_mask) before Trainer computes them."""

    def __init__(self, collator) -> None:
        self.collator, self.batches = collator, Batches()

    def __call__(self, features):
        batch = self.collator(features)
        mask = batch["attention_mask"]  # (B, T)
        self.batches.add(mask.shape[0], mask.shape[1], int(mask.sum()))
        return batch


def trainer_data(tokenizer, examples, padded: bool) -> tuple[list[dict], object]:
    """(rows, collator) of Trainer's two settings: run_glue's (`padded`: padded to 128 at
    tokenisation, default_data_collator) or dynamic padding (DataCollatorWithPadding)."""
    from transformers import DataCollatorWithPadding, default_data_collator

    texts = [e.text for e in examples]
    if padded:  # run_glue: pad_to_max_length=True by default
        encoded = tokenizer(texts, padding="max_length", max_length=MAX_LENGTH, truncation=True)
        collator = default_data_collator
    else:
        encoded = tokenizer(texts, max_length=MAX_LENGTH, truncation=True)
        collator = DataCollatorWithPadding(tokenizer)
    rows = [
        {**{k: v[i] for k, v in encoded.items()}, "labels": int(e.label)}
        for i, e in enumerate(examples)
    ]
    return rows, collator


def trainer_arguments(settings: common.Settings, padded: bool):
    """TrainingArguments as isobn train's settings: run_glue's random sampler (`padded`) or
    group_by_length; no evaluation, no checkpoints, no progress bar."""
    from transformers import TrainingArguments

    return TrainingArguments(
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
        bf16=settings.precision == "bf16",
        disable_tqdm=True,
    )


def trainer_model(settings: common.Settings):
    """AutoModelForSequenceClassification (2 labels) + isobn.attach, the head seeded."""
    from accelerate.utils import set_seed
    from transformers import AutoModelForSequenceClassification

    import isobn

    set_seed(42)
    model = AutoModelForSequenceClassification.from_pretrained(settings.model_dir(), num_labels=2)
    isobn.attach(model)  # IsoBN defaults = TrainConfig defaults (beta 0.5, momentum 0.05)
    return model


def trainer_arm(settings: common.Settings, task, tokenizer, padded: bool, record: Record):
    from transformers import Trainer

    LoopTimer = loop_timer_class()
    examples = task.splits["train"]

    def build() -> tuple:
        """Everything before trainer.train(): tokenising, the model, the Trainer."""
        rows, collator = trainer_data(tokenizer, examples, padded)
        counting = CountingCollator(collator)
        trainer = Trainer(
            model=trainer_model(settings),
            args=trainer_arguments(settings, padded),
            train_dataset=rows,
            data_collator=counting,
            processing_class=tokenizer,
        )
        return common.silent_trainer(trainer), counting

    def arm() -> float:
        timer = LoopTimer(settings.device)
        built: list = []

        def call() -> None:
            built.extend(build())
            trainer = built[0]
            trainer.add_callback(timer)
            trainer.train()

        start = time.perf_counter()
        seconds = timing.time_call(call, settings.device)
        trainer, counting = built
        shutil.rmtree(trainer.args.output_dir, ignore_errors=True)
        loop = timer.end - timer.begin
        record.whole_call.append(len(examples) / seconds)
        record.setup_share.append(1 - loop / seconds)
        record.before.append((timer.begin - start) / seconds)
        record.after.append(max(0.0, start + seconds - timer.end) / seconds)
        if record.batches is None:
            record.batches = counting.batches
        elif counting.batches != record.batches:
            record.batches_vary = True
        return len(examples) / loop

    return arm


def collate_cost(split, batches) -> float:
    """Milliseconds of isobn.training.data.collate per training batch (median over the epoch's)."""
    from isobn.training.data import collate

    times = []
    for indices in batches * 20:
        start = time.perf_counter()
        collate(split, indices, 0)
        times.append(time.perf_counter() - start)
    return timing.median(times) * 1e3


def chosen_arms(settings: common.Settings) -> tuple[str, ...]:
    if settings.train_arms:
        unknown = sorted(set(settings.train_arms) - set(ARMS))
        if unknown:
            raise SystemExit(
                f"--train-arms: unknown {', '.join(unknown)}; choose from {', '.join(ARMS)}"
            )
        return tuple(name for name in ARMS if name in settings.train_arms)
    return tuple(ARMS) if settings.quick else DEFAULT_ARMS


def run(settings: common.Settings) -> dict:
    common.header(
        "2./3. Training throughput: isobn train vs HF Trainer; IsoBN overhead in our loop"
    )
    from isobn.training.data import encode, length_grouped_batches
    from isobn.training.pretrained import load_tokenizer

    task = models.load_mr(settings.train_size, EVAL_ROWS, settings.data)
    files = models.task_files(task, settings.tmp / "mr-files")
    tokenizer = load_tokenizer(settings.model_dir())
    split = encode(task.splits["train"], tokenizer, MAX_LENGTH, False)
    lengths, n = split.lengths, len(split)
    ours = length_grouped_batches(lengths, BATCH, 42, 0)  # what train_epoch forms, epoch 0
    names = chosen_arms(settings)
    records = {name: Record() for name in names}
    for name in names:
        if name.startswith("isobn"):
            records[name].batches = Batches.of(lengths, ours)
    factories = {
        "isobn": lambda r: isobn_arm(settings, files, "isobn", n, r),
        "isobn_none": lambda r: isobn_arm(settings, files, "none", n, r),
        "isobn_unfused": lambda r: isobn_arm(
            settings, files, "isobn", n, r, adamw=models.PREVIOUS_ADAMW
        ),
        "trainer_padded": lambda r: trainer_arm(settings, task, tokenizer, True, r),
        "trainer_dynamic": lambda r: trainer_arm(settings, task, tokenizer, False, r),
    }
    samples = timing.interleaved(
        {name: factories[name](records[name]) for name in names}, settings.target_repeats
    )

    n_params, layers, hidden = models.model_dims(settings)

    def per_token(seq: int) -> float:
        return models.train_flops_per_token(n_params, layers, hidden, seq)

    results = {"train_sentences": n, "real_tokens": int(lengths.sum()), "arms": {}}
    rows = []
    for name in names:
        record, rate = records[name], timing.median(samples[name])  # samples/s
        batches = record.batches
        flops = models.batch_flops(batches.shapes, per_token)
        achieved = flops / (n / rate)
        whole = timing.median(record.whole_call)
        setup = timing.median(record.setup_share)
        results["arms"][name] = {
            "label": ARMS[name],
            "samples_per_s": rate,
            "samples": samples[name],
            "whole_call_samples_per_s": whole,
            "whole_call_samples": record.whole_call,
            "setup_share": setup,
            "before_loop_share": timing.median(record.before),
            "after_loop_share": timing.median(record.after),
            "steps": len(batches.shapes),
            "real_tokens": batches.real,
            "padded_tokens": batches.padded,
            "real_token_share": batches.share,
            "batches_vary": record.batches_vary,
            "flops_per_epoch": flops,
            "achieved_flops": achieved,
        }
        rows.append(
            [
                ARMS[name],
                f"{rate:.2f}",
                " ".join(f"{s:.2f}" for s in samples[name]),
                f"{whole:.2f}",
                f"{setup:.1%} ({timing.median(record.before):.1%} + "
                f"{timing.median(record.after):.1%})",
                str(len(batches.shapes)),
                f"{batches.share:.1%}" + (" (varied)" if record.batches_vary else ""),
                f"{achieved / 1e9:.1f}",
            ]
        )
    common.table(
        rows,
        [
            "arm",
            "per step /s",
            "rounds",
            "whole call /s",
            "outside loop (before + after)",
            "steps",
            "real tokens",
            "GFLOP/s",
        ],
    )
    print(
        f"  {n} mr sentences ({lengths.sum()} real tokens), batch {BATCH}, max length "
        f"{MAX_LENGTH}, 1 epoch, median of {settings.target_repeats} interleaved rounds; "
        "samples/s per step (the loop) and of the whole call (set-up included)"
    )
    worst = max(names, key=lambda name: results["arms"][name]["setup_share"])
    share = results["arms"][worst]["setup_share"]
    verdict = "met" if share < SETUP_LIMIT else "NOT met: raise --train-size"
    print(
        f"  share of a whole call outside the loop: at most {share:.1%} ({ARMS[worst]}); "
        f"< {SETUP_LIMIT:.0%}: {verdict}. Before the loop: reading, tokenising, the model, "
        "the optimizer; after: isobn's evaluation and checkpoints"
    )
    results["setup_share_max"] = share

    results["ratios"], results["paired_medians"], results["whole_call_ratios"] = {}, {}, {}
    for key, (a, b, text) in PAIRS.items():
        if a not in samples or b not in samples:
            continue
        ratio = timing.ratio(samples[a], samples[b])
        whole = timing.ratio(records[a].whole_call, records[b].whole_call)
        paired = timing.paired_median(samples[a], samples[b])
        results["ratios"][key], results["paired_medians"][key] = ratio, paired
        results["whole_call_ratios"][key] = whole
        print(
            f"  {text + ':':46} per step {timing.format_ratio(ratio)}, paired median "
            f"{paired:.3f}x; whole call {timing.format_ratio(whole)}"
        )
    if "none_vs_isobn" in results["ratios"]:
        overhead = tuple(100 * (v - 1) for v in results["ratios"]["none_vs_isobn"])
        results["isobn_overhead_pct"] = overhead[0]
        paired = 100 * (results["paired_medians"]["none_vs_isobn"] - 1)
        print(
            f"  3. IsoBN overhead in our loop (samples/s none / isobn - 1): "
            f"{timing.format_ratio(overhead, '%')}, paired median {paired:.2f}%"
        )

    collate_ms = collate_cost(split, ours)
    results["collate_ms"] = collate_ms
    if "isobn" in samples:
        step_ms = 1e3 * BATCH / timing.median(samples["isobn"])
        print(
            f"  isobn.training.data.collate of one batch of {BATCH}: {collate_ms:.2f} ms "
            f"({collate_ms / step_ms:.2%} of an average isobn step of {step_ms:.0f} ms)"
        )
    return results


if __name__ == "__main__":
    common.run_standalone(run, __doc__)
