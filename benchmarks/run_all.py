"""Every benchmark in one process, then the targets, each met or NOT met (`make bench`).

    .venv/bin/python benchmarks/run_all.py            # full run, CPU, packaged MiniLM
    .venv/bin/python benchmarks/run_all.py --quick    # ~1-minute smoke run (tiny random BERT)
    .venv/bin/python benchmarks/run_all.py --gpu      # CUDA, random BERT-base (BertConfig())
    .venv/bin/python benchmarks/run_all.py --only study   # study cells/hour, --jobs 2 vs 1

Order: 1 layer, real-token share of batches, 2/3 training throughput, 4 MFU (uses 2's
results), 5 evaluation, fast path; the study's throughput only when asked (--only study).
Figures of --quick come from a tiny random model: they check the code paths, nothing else.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import bench_batches
import bench_eval
import bench_fastpath
import bench_layer
import bench_mfu
import bench_study
import bench_train
import common
import machine

TARGETS = {
    "overhead": 1.0,  # IsoBN step overhead, %
    "vs_padded": 1.5,  # samples/s against Trainer with run_glue defaults
    "vs_dynamic": 1.1,  # samples/s against Trainer with dynamic padding
    "mfu": 0.50,  # of the measured matmul peak, CPU
}
BENCHES = ("layer", "batches", "train", "mfu", "eval", "fastpath", "study")
DEFAULT_BENCHES = BENCHES[:-1]  # the study's throughput (~7-10 min) only when asked


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def summary(results: dict) -> None:
    common.header("Targets")
    rows = []
    layer = results.get("layer")
    if layer:
        matched = [r for r in layer["rows"] if r["width_matched"]]
        for r in matched or layer["rows"]:
            pct = r["overhead_pct"]
            rows.append(
                [
                    f"IsoBN step overhead <= {TARGETS['overhead']:.0f}%, "
                    f"D={r['dim']}, B={r['batch']}",
                    f"{pct:.3f}%",
                    verdict(pct <= TARGETS["overhead"]),
                ]
            )
    train = results.get("train")
    if train:
        ratios = train["ratios"]
        for key, target, text in (
            ("vs_trainer_padded", "vs_padded", "run_glue defaults"),
            ("vs_trainer_dynamic", "vs_dynamic", "Trainer dynamic padding"),
        ):
            if key not in ratios:
                continue  # an arm not run (--train-arms)
            value = ratios[key][0]
            whole = train["whole_call_ratios"][key][0]
            rows.append(
                [
                    f"train samples/s >= {TARGETS[target]}x {text}",
                    f"{value:.3f}x per step (paired median "
                    f"{train['paired_medians'][key]:.3f}x), {whole:.3f}x whole call",
                    verdict(value >= TARGETS[target]),
                ]
            )
        rows.append(
            [
                "train: under 5% of a whole call outside the loop (size check)",
                f"{train['setup_share_max']:.1%} at {train['train_sentences']} sentences",
                verdict(train["setup_share_max"] < bench_train.SETUP_LIMIT),
            ]
        )
        if "isobn_overhead_pct" in train:
            rows.append(
                [
                    "IsoBN overhead in our loop (bench 3, informative)",
                    f"{train['isobn_overhead_pct']:.2f}%",
                    "-",
                ]
            )
    mfu = results.get("mfu")
    if mfu:
        for name, row in mfu["rows"].items():
            if name.startswith("epoch:") and name != "epoch: " + bench_train.ARMS["isobn"]:
                continue
            rows.append(
                [
                    f"MFU >= {TARGETS['mfu']:.0%} of matmul peak: {name}",
                    f"{row['mfu']:.1%}",
                    verdict(row["mfu"] >= TARGETS["mfu"]),
                ]
            )
    study = results.get("study")
    if study:
        rows.append(
            [
                "study cells/hour, --jobs 2 / --jobs 1 (informative)",
                f"{study['ratio'][0]:.3f}x",
                "-",
            ]
        )
    common.table(rows, ["target", "achieved", "verdict"])
    if results["quick"]:
        print("  --quick: a tiny random model and small sizes; these verdicts say nothing")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_flags(parser)
    parser.add_argument("--only", nargs="+", choices=BENCHES, help="run these benchmarks only")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    args = parser.parse_args()
    if min(args.repeats, args.target_repeats or 3) < 3:
        print("note: fewer than 3 rounds: medians of fewer than 3 samples", file=sys.stderr)
    settings = common.settings_from_args(args)
    common.quiet()
    started = time.perf_counter()
    info = machine.machine()
    argv = common.shown_command(sys.argv)
    print("isobn benchmarks: " + " ".join(argv))
    for key, value in info.items():
        print(f"  {key}: {value}")
    print(
        f"  device: {settings.device}, model: {settings.model}, rounds: "
        f"{settings.target_repeats} (benchmarks 1-4), {settings.repeats} (5, fast path); "
        f"train sentences: {settings.train_size}, dev sentences: {settings.eval_size}"
    )
    chosen = args.only or DEFAULT_BENCHES
    results: dict = {"machine": info, "argv": argv, "quick": settings.quick}
    try:
        if "layer" in chosen:
            results["layer"] = bench_layer.run(settings)
        if "batches" in chosen:
            results["batches"] = bench_batches.run(settings)
        if "train" in chosen:
            results["train"] = bench_train.run(settings)
        if "mfu" in chosen:
            results["mfu"] = bench_mfu.run(settings, results.get("train"))
        if "eval" in chosen:
            results["eval"] = bench_eval.run(settings)
        if "fastpath" in chosen:
            results["fastpath"] = bench_fastpath.run(settings)
        if "study" in chosen:
            results["study"] = bench_study.run(settings)
    finally:
        settings.cleanup()
    summary(results)
    elapsed = time.perf_counter() - started
    results["wall_seconds"] = elapsed
    results["peak_memory_mb"] = machine.peak_memory_mb(settings.device)
    where = "max_memory_allocated" if settings.cuda else "ru_maxrss"
    print(
        f"\nwall time {elapsed / 60:.1f} min; peak memory of this process ({where}) "
        f"{results['peak_memory_mb']:.0f} MiB; load average now {machine.machine()['load_average']}"
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2, default=str)


if __name__ == "__main__":
    main()
