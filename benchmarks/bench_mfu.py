"""Benchmark 4: model-FLOP utilisation (MFU) against the matmul peak measured in the same run.

    achieved FLOP/s = training FLOPs / seconds, training FLOPs per token (PaLM, appendix B):
        6 N + 12 L H T
    N: non-embedding parameters (encoder layers, pooler, classifier); L layers; H hidden size;
    T: the padded length of the token's batch (padding positions are computed, so they count).
    peak = the best FLOP/s of float32 torch.matmul (2048 x 2048, and 4096 x 4096 outside
    --quick; 2 n^3 FLOPs each) with torch.get_num_threads() threads, sampled in rounds
    interleaved with the training-step samples. MFU = achieved / peak.

Rows: one fixed-shape training step (batch 32, length 64, all real tokens; train.py's step
without accelerate) and, when run_all.py passes the results of bench_train, the epochs of the
training-throughput arms (their median samples/s over the FLOPs of their actual batches).

    .venv/bin/python benchmarks/bench_mfu.py [--quick] [--gpu]
"""

from __future__ import annotations

import common
import models
import timing
import torch

BATCH = 32


def matmul_peak(device: torch.device, sizes: dict[int, int]) -> float:
    """Best FLOP/s of float32 n x n matmuls, `sizes[n]` tries of each size n."""
    best = 0.0
    for n, tries in sizes.items():
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        a @ b  # warm-up
        for _ in range(tries):
            seconds = timing.time_call(lambda a=a, b=b: a @ b, device)
            best = max(best, 2 * n**3 / seconds)
    return best


def run(settings: common.Settings, train_results: dict | None = None) -> dict:
    common.header("4. Model-FLOP utilisation against the measured matmul peak")
    device = settings.device
    if settings.cuda:
        sizes = {4096: 5, 8192: 3}
    else:
        sizes = {2048: 3} if settings.quick else {2048: 5, 4096: 2}

    model = models.classifier(settings, norm="isobn")
    optimizer = models.optimizer_like_train(model)
    batch = models.random_batch(settings, BATCH, models.SEQ_LEN)
    models.train_step(model, optimizer, batch)  # warm-up
    n_params, layers, hidden = models.model_dims(settings)
    step_flops = (
        BATCH
        * models.SEQ_LEN
        * models.train_flops_per_token(n_params, layers, hidden, models.SEQ_LEN)
    )

    samples = timing.interleaved(
        {
            "peak": lambda: matmul_peak(device, sizes),
            "step": lambda: (
                step_flops
                / timing.time_call(lambda: models.train_step(model, optimizer, batch), device)
            ),
        },
        settings.target_repeats,
    )
    peak = max(samples["peak"])
    peak_median = timing.median(samples["peak"])
    rows = [
        [
            f"matmul float32 {'/'.join(map(str, sizes))}",
            f"{peak / 1e9:.1f} (median {peak_median / 1e9:.1f})",
            "-",
            "-",
        ]
    ]
    achieved = {
        f"train step B={BATCH} T={models.SEQ_LEN} (norm isobn)": timing.median(samples["step"])
    }
    if train_results:
        for arm in train_results["arms"].values():
            achieved[f"epoch: {arm['label']}"] = arm["achieved_flops"]
    results = {
        "peak_flops": peak,
        "peak_flops_median": peak_median,
        "peak_samples": samples["peak"],
        "threads": torch.get_num_threads(),
        "n_params": n_params,
        "rows": {},
    }
    for name, flops in achieved.items():
        mfu, mfu_median = flops / peak, flops / peak_median
        results["rows"][name] = {"achieved_flops": flops, "mfu": mfu, "mfu_vs_median": mfu_median}
        rows.append([name, f"{flops / 1e9:.1f}", f"{mfu:.1%}", f"{mfu_median:.1%}"])
    common.table(rows, ["workload", "GFLOP/s", "MFU (best peak)", "MFU (median peak)"])
    print(
        f"  FLOPs/token = 6 N + 12 L H T with N = {n_params / 1e6:.2f} M non-embedding parameters, "
        f"L = {layers}, H = {hidden}; peak = best float32 matmul with "
        f"{torch.get_num_threads()} threads"
    )
    return results


if __name__ == "__main__":
    common.run_standalone(run, __doc__)
