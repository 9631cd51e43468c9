"""Benchmark 1: the IsoBN layer against nn.BatchNorm1d and against one encoder training step.

Layer arms: forward in train mode (the statistics update included) of an input (B, D) that
requires grad, as the pooled vector does in training; many calls per sample. Step arm: one
training step of the classifier (norm none) at batch B, length 64: forward, cross-entropy,
backward, clipping, AdamW step. Overhead = IsoBN time / step time.

On the CPU the encoder is the packaged MiniLM (hidden 384), so the rows D = 768 and 1024 time
a wider IsoBN against the same 384-wide step: an upper bound for those widths, whose own
encoders cost several times more per step.

A third layer arm times isobn_prototype.PrototypeIsoBN (the same arithmetic with fewer (D, D)
temporaries), the proposal that src adopted in commit 8a9a662: it now shows what is left
between the two; its largest relative difference from IsoBN's scale is printed with it.

    .venv/bin/python benchmarks/bench_layer.py [--quick] [--gpu]
"""

from __future__ import annotations

import common
import torch
from isobn_prototype import PrototypeIsoBN, max_relative_difference
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

    model = common.classifier(settings, norm="none")
    optimizer = common.optimizer_like_train(model)
    hidden = common.encoder_shape(model)[1]
    arms = {}
    for b in batches:
        batch = common.random_batch(settings, b, common.SEQ_LEN)
        common.train_step(model, optimizer, batch)  # warm-up: allocator, kernels

        def step(batch=batch) -> float:
            return common.time_call(lambda: common.train_step(model, optimizer, batch), device)

        arms[f"step B={b}"] = step
        for d in dims:
            x = torch.randn(b, d, device=device, requires_grad=True)  # (B, D) pooled vectors
            layers = {
                "isobn": IsoBN(d),
                "bn": nn.BatchNorm1d(d),
                "proto": PrototypeIsoBN(d),
            }
            for kind, layer in layers.items():
                layer.to(device).train()

                def forward(layer=layer, x=x):
                    return layer(x)

                iters = common.calibrate(forward, device, target_s)

                def sample(forward=forward, iters=iters) -> float:
                    return common.time_call(forward, device, iters)

                arms[f"{kind} D={d} B={b}"] = sample
    samples = common.interleaved(arms, settings.target_repeats)

    rows, results = [], []
    for b in batches:
        step = samples[f"step B={b}"]
        for d in dims:
            iso, bn = samples[f"isobn D={d} B={b}"], samples[f"bn D={d} B={b}"]
            proto = samples[f"proto D={d} B={b}"]
            overhead = common.ratio(iso, step)
            vs_bn = common.ratio(iso, bn)
            proto_speedup = common.ratio(iso, proto)
            results.append(
                {
                    "dim": d,
                    "batch": b,
                    "isobn_us": common.median(iso) * 1e6,
                    "batchnorm_us": common.median(bn) * 1e6,
                    "step_ms": common.median(step) * 1e3,
                    "isobn_over_batchnorm": vs_bn[0],
                    "overhead_pct": overhead[0] * 100,
                    "overhead_pct_rounds": (overhead[1] * 100, overhead[2] * 100),
                    "prototype_us": common.median(proto) * 1e6,
                    "prototype_speedup": proto_speedup[0],
                    "prototype_overhead_pct": common.ratio(proto, step)[0] * 100,
                    "width_matched": d == hidden,
                }
            )
            rows.append(
                [
                    str(d),
                    str(b),
                    f"{common.median(iso) * 1e6:.1f}",
                    f"{common.median(bn) * 1e6:.1f}",
                    common.format_ratio(vs_bn),
                    f"{common.median(step) * 1e3:.1f}",
                    common.format_ratio(tuple(100 * v for v in overhead), "%"),
                    f"{common.median(proto) * 1e6:.1f}",
                    common.format_ratio(proto_speedup),
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
            "proto us",
            "IsoBN/proto",
            "D = encoder width",
        ],
    )
    print(
        f"  median of {settings.target_repeats} interleaved samples; step = {settings.model} "
        f"classifier, length {common.SEQ_LEN}, forward+backward+clip+AdamW"
    )
    differences = {d: max_relative_difference(d) for d in dims}
    text = ", ".join(f"D={d}: {v:.1e}" for d, v in differences.items())
    print(f"  prototype vs IsoBN, largest relative difference of the scale: {text}")
    return {"rows": results, "encoder_hidden": hidden, "prototype_difference": differences}


def main() -> None:
    common.run_standalone(run, __doc__)


if __name__ == "__main__":
    main()
