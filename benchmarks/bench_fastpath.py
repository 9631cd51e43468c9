"""Fast path: does torch.compile, bf16 autocast, a thread setting or the AdamW implementation
speed up the training step? Standalone: nothing in src changes; each arm is a copy of the step.

Step arms (the classifier with IsoBN, batch 16, length 64, train.py's step without
accelerate; every arm its own model and optimizer, same initial weights):

* baseline: float32, eager, AdamW as train.py builds it (fused=True), default threads;
* AdamW fused=False (train.py's setting before commit 8a9a662);
* 1 thread (CPU, when torch uses more than one);
* bf16 autocast (torch.autocast on the device, bfloat16);
* torch.compile (default mode, float32); its one-time compilation is timed separately.

Optimizer arms: AdamW.step() alone over the classifier's parameters with random gradients,
fused=False (train.py before 8a9a662), foreach=True, fused=True (train.py).

    .venv/bin/python benchmarks/bench_fastpath.py [--quick] [--gpu] [--no-compile]
"""

from __future__ import annotations

import copy
import time

import common
import models
import timing
import torch

BATCH = 16
BASELINE = "baseline: fp32 eager, AdamW fused=True (train.py)"


def run(settings: common.Settings) -> dict:
    common.header("Fast path: torch.compile, bf16 autocast, threads, AdamW (train step)")
    device = settings.device
    threads = torch.get_num_threads()
    base = models.classifier(settings, norm="isobn")
    batch = models.random_batch(settings, BATCH, models.SEQ_LEN)

    def step_arm(model, optimizer, precision="fp32", num_threads=None, warm_up=True):
        def arm() -> float:
            if num_threads is not None:
                torch.set_num_threads(num_threads)
            try:
                return timing.time_call(
                    lambda: models.train_step(model, optimizer, batch, precision), device
                )
            finally:
                torch.set_num_threads(threads)

        if warm_up:
            arm()  # allocator, kernel choice; for the compiled arm: compilation
        return arm

    arms, notes = {}, {}
    m = copy.deepcopy(base)
    arms[BASELINE] = step_arm(m, models.optimizer_like_train(m))
    m = copy.deepcopy(base)
    arms["AdamW fused=False (before 8a9a662)"] = step_arm(
        m, models.optimizer_like_train(m, **models.PREVIOUS_ADAMW)
    )
    if not settings.cuda and threads > 1:
        m = copy.deepcopy(base)
        arms["1 thread"] = step_arm(m, models.optimizer_like_train(m), num_threads=1)
    m = copy.deepcopy(base)
    # no warm-up call: on CPUs without bf16 units one bf16 step costs as much as ~15 fp32 ones
    arms["bf16 autocast"] = step_arm(
        m, models.optimizer_like_train(m), precision="bf16", warm_up=settings.cuda
    )
    if settings.compile:
        m = copy.deepcopy(base)
        compiled = torch.compile(m)
        start = time.perf_counter()
        try:
            arm = step_arm(compiled, models.optimizer_like_train(m))
        except Exception as error:  # a missing compiler, an unsupported op: report, go on
            notes["torch.compile"] = f"failed: {type(error).__name__}: {error}".splitlines()[0]
        else:
            notes["torch.compile"] = f"first step (compilation) {time.perf_counter() - start:.1f} s"
            arms["torch.compile"] = arm
    else:
        notes["torch.compile"] = "skipped (--quick or --no-compile)"
    samples = timing.interleaved(arms, settings.repeats)

    baseline = samples[BASELINE]
    rows = []
    for name, values in samples.items():
        speedup = timing.ratio(baseline, values)  # > 1: faster than the baseline
        rows.append(
            [
                name,
                f"{timing.median(values) * 1e3:.0f}",
                " ".join(f"{v * 1e3:.0f}" for v in values),
                timing.format_ratio(speedup),
                "helps" if speedup[0] > 1.02 else ("hurts" if speedup[0] < 0.98 else "no change"),
            ]
        )
    common.table(rows, ["step arm", "ms", "rounds (ms)", "speed-up vs baseline", "verdict"])
    print(
        f"  batch {BATCH}, length {models.SEQ_LEN}, median of {settings.repeats} interleaved "
        f"rounds; {threads} threads unless stated"
    )
    for name, note in notes.items():
        print(f"  {name}: {note}")

    optimizer_results = optimizer_arms(settings, base)
    return {
        "step_ms": {k: timing.median(v) * 1e3 for k, v in samples.items()},
        "speedup": {k: timing.ratio(baseline, v) for k, v in samples.items()},
        "notes": notes,
        "optimizer_ms": optimizer_results,
    }


def optimizer_arms(settings: common.Settings, model) -> dict:
    """AdamW.step() alone, three implementations, interleaved."""
    device = settings.device
    generator = torch.Generator().manual_seed(0)
    for param in model.parameters():
        grad = torch.randn(param.shape, generator=generator) * 1e-3
        param.grad = grad.to(device)
    variants = {
        "AdamW fused=False (before 8a9a662)": {"fused": False},
        "AdamW foreach=True": {"fused": None, "foreach": True},
        "AdamW fused=True (train.py)": {"fused": True},
    }
    arms = {}
    for name, options in variants.items():
        optimizer = models.optimizer_like_train(model, **options)
        optimizer.step()  # state allocation
        arms[name] = timing.calibrated_arm(optimizer.step, device, 0.05 if settings.quick else 0.3)
    samples = timing.interleaved(arms, settings.repeats)
    baseline = samples["AdamW fused=False (before 8a9a662)"]
    rows = [
        [name, f"{timing.median(v) * 1e3:.1f}", timing.format_ratio(timing.ratio(baseline, v))]
        for name, v in samples.items()
    ]
    n = sum(p.numel() for p in model.parameters())
    common.table(rows, ["optimizer step", "ms", "speed-up vs fused=False"])
    print(f"  {n / 1e6:.1f} M parameters (embeddings included: their gradients are dense)")
    return {k: timing.median(v) * 1e3 for k, v in samples.items()}


if __name__ == "__main__":
    common.run_standalone(run, __doc__)
