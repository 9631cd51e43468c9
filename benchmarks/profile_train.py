"""Where a training step's time goes, in isobn's loop and in Trainer's: torch.profiler shares.

Not a timing benchmark: shares within one profile hold on a busy machine, absolute times do
not. Both loops train the classifier (IsoBN on the pooler output) on the same mr subset,
batch 32, max length 128 (--train-size sentences, 1,200 by default; pass --threads 1 on a
shared machine, where two threads per process wait on each other):

* isobn: isobn.training.train.training_step (the step `isobn train` runs, without accelerate) on the
  batches isobn.training.data.length_grouped_batches forms, collated by
  isobn.training.data.collate, then
  loss.item() as train_epoch does;
* Trainer: its dynamic-padding arm of bench_train.py (AutoModelForSequenceClassification +
  isobn.attach, DataCollatorWithPadding, group_by_length), its own loop.

The first step of each is left out of the profile (allocation, kernel choice). Self time of
every aten operator is summed into categories; the rest of the profiled wall time is time
outside operators (Python, the loops' own code, data loading).

    .venv/bin/python benchmarks/profile_train.py [--threads 1] [--train-size N] [--quick]
"""

from __future__ import annotations

import shutil
import time

import bench_train
import common
import models
import torch

BATCH = 32
MAX_LENGTH = 128
# category -> aten operators; "embedding gradient" is fill_ on the (vocabulary, hidden) table
CATEGORIES = {
    "matmuls (mm, addmm, bmm)": ("aten::mm", "aten::addmm", "aten::bmm"),
    "dropout masks (bernoulli_)": ("aten::bernoulli_",),
    "AdamW step (_fused_adamw_)": ("aten::_fused_adamw_", "aten::_foreach_add_"),
    "gradient norm and clipping (vector_norm, mul_)": (
        "aten::linalg_vector_norm",
        "aten::_foreach_norm",
        "aten::mul_",
        "aten::_foreach_mul_",
    ),
    "copies (copy_: layouts, transposes)": ("aten::copy_",),
}
EMBEDDING = "zeroing the dense word-embedding gradient (fill_)"


def shares(prof, wall: float, vocab_shape: list[int]) -> dict[str, float]:
    """Seconds per category of the profile `prof` over `wall` profiled seconds."""
    seconds = {name: 0.0 for name in (*CATEGORIES, EMBEDDING, "other operators")}
    for event in prof.key_averages(group_by_input_shape=True):
        if not event.key.startswith("aten::"):
            continue
        spent = event.self_cpu_time_total / 1e6
        if event.key == "aten::fill_" and event.input_shapes[:1] == [vocab_shape]:
            seconds[EMBEDDING] += spent
            continue
        name = next((c for c, ops in CATEGORIES.items() if event.key in ops), "other operators")
        seconds[name] += spent
    seconds["outside operators (Python, loop, data)"] = max(0.0, wall - sum(seconds.values()))
    return seconds


def isobn_profile(settings, split, vocab_shape) -> tuple[dict, int]:
    from torch.profiler import ProfilerActivity, profile

    from isobn.training.data import collate, length_grouped_batches
    from isobn.training.optim import Optimisation
    from isobn.training.train import training_step

    model = models.classifier(settings, norm="isobn")
    opt = Optimisation(models.optimizer_like_train(model), max_grad_norm=1.0)
    batches = length_grouped_batches(split.lengths, BATCH, 42, 0)

    def step(indices) -> None:
        batch = {k: v.to(settings.device) for k, v in collate(split, indices, 0).items()}
        training_step(model, batch, opt)["loss"].item()

    step(batches[0])  # warm-up, not profiled
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        start = time.perf_counter()
        for indices in batches[1:]:
            step(indices)
        wall = time.perf_counter() - start
    return shares(prof, wall, vocab_shape), len(batches) - 1


def trainer_profile(settings, task, tokenizer, vocab_shape) -> tuple[dict, int]:
    from torch.profiler import ProfilerActivity, profile
    from transformers import Trainer, TrainerCallback

    rows, collator = bench_train.trainer_data(tokenizer, task.splits["train"], padded=False)
    prof = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
    window = {}

    class AfterFirstStep(TrainerCallback):
        """Profile from the end of the first step to the end of training."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                prof.start()
                window["start"] = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            window["wall"] = time.perf_counter() - window["start"]
            prof.stop()
            window["steps"] = state.global_step - 1

    trainer = Trainer(
        model=bench_train.trainer_model(settings),
        args=bench_train.trainer_arguments(settings, padded=False),
        train_dataset=rows,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[AfterFirstStep()],
    )
    common.silent_trainer(trainer).train()
    shutil.rmtree(trainer.args.output_dir, ignore_errors=True)
    return shares(prof, window["wall"], vocab_shape), window["steps"]


def run(settings: common.Settings) -> dict:
    common.header("Where a training step's time goes: isobn's loop and Trainer's (profiler)")
    from transformers import AutoConfig

    from isobn.training.data import encode
    from isobn.training.pretrained import load_tokenizer

    task = models.load_mr(settings.train_size, 16)
    tokenizer = load_tokenizer(settings.model_dir())
    split = encode(task.splits["train"], tokenizer, MAX_LENGTH, False)
    config = AutoConfig.from_pretrained(settings.model_dir())
    vocab_shape = [config.vocab_size, config.hidden_size]
    ours, our_steps = isobn_profile(settings, split, vocab_shape)
    theirs, their_steps = trainer_profile(settings, task, tokenizer, vocab_shape)
    rows = []
    for name in ours:
        rows.append(
            [
                name,
                f"{ours[name] / sum(ours.values()):.1%}",
                f"{theirs[name] / sum(theirs.values()):.1%}",
            ]
        )
    common.table(rows, ["share of the profiled wall time", "isobn loop", "Trainer loop"])
    print(
        f"  {len(split)} mr sentences, batch {BATCH}; {our_steps} isobn and {their_steps} "
        f"Trainer steps profiled (the first left out); {torch.get_num_threads()} threads; "
        f"{settings.model}; the two loops form different batches (see bench_batches.py)"
    )
    return {"isobn": ours, "trainer": theirs, "steps": (our_steps, their_steps)}


if __name__ == "__main__":
    common.run_standalone(run, __doc__)
