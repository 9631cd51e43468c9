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

    steps, hidden = models.step_arms(settings, batches)
    arms = {}
    for b in batches:
        arms[f"step B={b}"] = steps[b]
        for d in dims:
            x = torch.randn(b, d, device=device, requires_grad=True)  # (B, D) pooled vectors
            for kind, layer in {"isobn": IsoBN(d), "bn": nn.BatchNorm1d(d)}.items():
                layer.to(device).train()
                arms[f"{kind} D={d} B={b}"] = timing.calibrated_arm(
                    lambda layer=layer, x=x: layer(x), device, target_s
                )
    samples = timing.interleaved(arms, settings.target_repeats)

    rows, results = [], []
    for b in batches:
        step = samples[f"step B={b}"]
        for d in dims:
            iso, bn = samples[f"isobn D={d} B={b}"], samples[f"bn D={d} B={b}"]
            vs_bn = timing.ratio(iso, bn)
            figures, cells = timing.share_of_step(iso, step)
            results.append(
                {
                    "dim": d,
                    "batch": b,
                    "isobn_us": timing.median(iso) * 1e6,
                    "batchnorm_us": timing.median(bn) * 1e6,
                    "isobn_over_batchnorm": vs_bn[0],
                    **figures,
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
                    *cells,
                    models.width_cell(d, hidden),
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
        f"  median of {settings.target_repeats} interleaved samples; {models.step_note(settings)}"
    )
    return {"rows": results, "encoder_hidden": hidden}


if __name__ == "__main__":
    common.run_standalone(run, __doc__)
