"""Benchmark 1: the IsoBN layer against nn.BatchNorm1d and against one encoder training step.

Layer arms: forward in train mode (the statistics update included) of an input (B, D) that
requires grad, as the pooled vector does in training; many calls per sample. Step arm: one
training step of the classifier (norm none) at batch B, length 64: forward, cross-entropy,
backward, clipping, AdamW step. Overhead = IsoBN time / step time.

On the CPU the encoder is the packaged MiniLM (hidden 384), so the rows D = 768 and 1024 time
a wider IsoBN against the same 384-wide step: an upper bound for those widths, whose own
encoders cost several times more per step.

The layer is the package's own (isobn.IsoBN): no copy of its arithmetic lives here. (A
prototype with fewer (D, D) temporaries was measured here until src adopted it in 8a9a662.)

    .venv/bin/python benchmarks/bench_layer.py [--quick] [--gpu]
"""

from __future__ import annotations

import common
import models
import timing
import torch
from torch import nn

from isobn import IsoBN

DIMS = (384, 768, 1024)
BATCHES = (16, 32)


def run(settings: common.Settings) -> dict:
    common.header("1. IsoBN layer vs nn.BatchNorm1d vs one encoder training step")
    device = settings.device
    dims = DIMS[:1] if settings.quick else DIMS
    batches = BATCHES[:1] if settings.quick else BATCHES
    target_s = 0.02 if settings.quick else 0.15  # layer time per sample

    model = models.classifier(settings, norm="none")
    optimizer = models.optimizer_like_train(model)
    hidden = models.encoder_shape(model)[1]
    arms = {}
    for b in batches:
        batch = models.random_batch(settings, b, models.SEQ_LEN)
        models.train_step(model, optimizer, batch)  # warm-up: allocator, kernels

        def step(batch=batch) -> float:
            return timing.time_call(lambda: models.train_step(model, optimizer, batch), device)

        arms[f"step B={b}"] = step
        for d in dims:
            x = torch.randn(b, d, device=device, requires_grad=True)  # (B, D) pooled vectors
            layers = {
                "isobn": IsoBN(d),
                "bn": nn.BatchNorm1d(d),
            }
            for kind, layer in layers.items():
                layer.to(device).train()

                def forward(layer=layer, x=x):
                    return layer(x)

                iters = timing.calibrate(forward, device, target_s)

                def sample(forward=forward, iters=iters) -> float:
                    return timing.time_call(forward, device, iters)

                arms[f"{kind} D={d} B={b}"] = sample
    samples = timing.interleaved(arms, settings.target_repeats)

    rows, results = [], []
    for b in batches:
        step = samples[f"step B={b}"]
        for d in dims:
            iso, bn = samples[f"isobn D={d} B={b}"], samples[f"bn D={d} B={b}"]
            overhead = timing.ratio(iso, step)
            vs_bn = timing.ratio(iso, bn)
            results.append(
                {
                    "dim": d,
                    "batch": b,
                    "isobn_us": timing.median(iso) * 1e6,
                    "batchnorm_us": timing.median(bn) * 1e6,
                    "step_ms": timing.median(step) * 1e3,
                    "isobn_over_batchnorm": vs_bn[0],
                    "overhead_pct": overhead[0] * 100,
                    "overhead_pct_rounds": (overhead[1] * 100, overhead[2] * 100),
                    "width_matched": d == hidden,
                }
            )
            rows.append(
                [
                    str(d),
                    str(b),
                    f"{timing.median(iso) * 1e6:.1f}",
                    f"{timing.median(bn) * 1e6:.1f}",
                    timing.format_ratio(vs_bn),
                    f"{timing.median(step) * 1e3:.1f}",
                    timing.format_ratio(tuple(100 * v for v in overhead), "%"),
                    "yes" if d == hidden else f"no ({hidden}-wide step)",
                ]
            )
    common.table(
        rows,
        [
            "D",
            "B",
            "IsoBN us",
            "BN1d us",
            "IsoBN/BN1d",
            "step ms",
            "IsoBN/step",
            "D = encoder width",
        ],
    )
    print(
        f"  median of {settings.target_repeats} interleaved samples; step = {settings.model} "
        f"classifier, length {models.SEQ_LEN}, forward+backward+clip+AdamW"
    )
    return {"rows": results, "encoder_hidden": hidden}


def main() -> None:
    common.run_standalone(run, __doc__)


if __name__ == "__main__":
    main()
