"""`isobn train --compile` against eager, on the CPU (or the GPU when there is one): MiniLM (the
packaged all-MiniLM-L6-v2), a seeded stratified mr subset, batch 32, max length 128, one epoch,
method isobn, float32 unless --precision.

Arms, one sample each per round, interleaved (benchmarks/timing.interleaved): `eager` and
`compile` (inductor, dynamic shapes). Each sample is isobn.training.train.train(cfg) in this
process; its figure is metrics.json's train_samples_per_second (collate, forward, backward,
clipping and optimizer steps). The compile arm's first run includes compiling; later runs
reuse the graph (torch.compile caches by code, not by model instance). So:

* compile seconds = the first compile run's step seconds - the median of the later ones;
* samples/s of both arms from the rounds after a warm-up round of each;
* it pays after compile seconds / (1/eager rate - 1/compile rate) samples.

On a machine with a GPU, `train` runs there (add `--precision bf16` for the usual GPU setting).
Must run on a quiet machine (timings on shared cores are wrong):

    .venv/bin/python benchmarks/bench_compile.py [--train-size 1200] [--rounds 3] [--precision bf16]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import models
import timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=1200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="minilm")
    parser.add_argument(
        "--precision", default="fp32", choices=("fp32", "bf16", "fp16"), help="e.g. bf16 on a GPU"
    )
    args = parser.parse_args()

    from isobn.training.config import TrainConfig
    from isobn.training.train import train

    tmp = Path(tempfile.mkdtemp(prefix="bench-compile-"))
    files = models.task_files(models.load_mr(args.train_size, 16), tmp / "data")
    step_seconds: dict[str, list[float]] = {"eager": [], "compile": []}
    runs = iter(range(10**6))

    def arm(compile: bool):
        def run() -> float:
            out = tmp / f"run{next(runs)}"
            cfg = TrainConfig(
                out=str(out),
                model=args.model,
                train_file=files["train"],
                dev_file=files["dev"],
                epochs=1,
                batch_size=32,
                max_length=128,
                learning_rate=2e-5,
                seed=42,
                isotropy_examples=0,
                compile=compile,
                precision=args.precision,
            )
            result = train(cfg)
            shutil.rmtree(out, ignore_errors=True)
            rate = result["train_samples_per_second"]
            step_seconds["compile" if compile else "eager"].append(args.train_size / rate)
            return rate

        return run

    arms = {"eager": arm(False), "compile": arm(True)}
    timing.interleaved(arms, 1)  # warm-up: the compile arm compiles here
    first_compile = step_seconds["compile"][0]
    samples = timing.interleaved(arms, args.rounds)
    later = step_seconds["compile"][1:]
    compile_seconds = first_compile - timing.median(later)
    eager_rate, compiled_rate = timing.median(samples["eager"]), timing.median(samples["compile"])
    print(f"eager    {eager_rate:8.1f} samples/s")
    speedup = timing.format_ratio(timing.ratio(samples["compile"], samples["eager"]))
    print(f"compile  {compiled_rate:8.1f} samples/s ({speedup} eager)")
    print(f"compile time {compile_seconds:.1f} s (first compiled run minus the later ones)")
    saved = 1 / eager_rate - 1 / compiled_rate
    if saved > 0:
        print(f"pays after {compile_seconds / saved:,.0f} training samples")
    else:
        print("does not pay: compiled steps are not faster")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
