"""Per-step overhead of each isotropy method (whitening, Cor-Reg, I-STAR, IsoBN) against `none`.

Method arms: the method's modules, built from their spec (`isobn.methods.parse_method`), on
random pooled embeddings x (B, D) that require grad, in train mode: the norm's forward, a
random linear loss on its output plus every regulariser's loss on x, and the backward to x;
many calls per sample. `none` is the same call through the identity, the floor of the arm.
Step arm: one training step of the classifier with norm none at batch B, length 64 (forward,
cross-entropy, backward, clipping, AdamW step). Overhead = method time / step time. Every arm
is timed in the same interleaved rounds (timing.interleaved), so ratios are side by side.

Whitening is timed with each solver: `newton` (20 Newton-Schulz steps, matrix products only,
the default on an accelerator) and `eigh` (one eigendecomposition, the default on the CPU),
the latter also at update_every 10 and 100 (calibrated runs are many times longer than 100
calls, so the recomputation is amortised as in training); I-STAR (a trace and a Frobenius norm,
no eigenvalues since issue #18) has its reference covariance set first, as the trainer does
before each epoch. Their accuracy against exact ZCA: benchmarks/whitening_accuracy.py.

On the CPU the encoder is the packaged MiniLM (hidden 384): the D = 768 rows time a wider
method against the same 384-wide step, an upper bound for that width.

    .venv/bin/python benchmarks/bench_methods.py [--quick] [--gpu]
"""

from __future__ import annotations

import common
import models
import timing
import torch

from isobn.methods import parse_method

DIMS = (384, 768)
BATCHES = (16, 32)
SPECS = (
    "none",
    "isobn",
    "whitening:solver=newton",
    "whitening:solver=eigh",
    "whitening:solver=eigh,update_every=10",
    "whitening:solver=eigh,update_every=100",
    "whitening:backprop=true,solver=newton",
    "whitening:backprop=true,solver=eigh",
    "correg",
    "istar",
)


def method_call(spec_text: str, d: int, b: int, device: torch.device, seed: int = 0):
    """A closure: one forward + backward of the spec's modules on x (B, D)."""
    spec = parse_method(spec_text)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=generator).to(device).requires_grad_()  # pooled (B, D)
    upstream = torch.randn(b, d, generator=generator).to(device)  # dL/d(norm output)
    norm = spec.norm.build(d).to(device).train()
    regularisers = [part.build(d).to(device).train() for part in spec.regularisers]
    for regulariser in regularisers:
        if hasattr(regulariser, "set_reference"):
            sample = torch.randn(max(4 * d, 256), d, generator=generator).to(device)
            regulariser.set_reference(sample)

    def call() -> None:
        loss = (norm(x) * upstream).sum()
        for regulariser in regularisers:
            loss = loss + regulariser(x)
        loss.backward()
        x.grad = None

    return call


def run(settings: common.Settings) -> dict:
    common.header("Isotropy methods: module forward + backward against one training step")
    device = settings.device
    dims = DIMS[:1] if settings.quick else DIMS
    batches = BATCHES[:1] if settings.quick else BATCHES
    specs = SPECS[:5] + SPECS[8:] if settings.quick else SPECS
    target_s = 0.02 if settings.quick else 0.15  # method time per sample

    steps, hidden = models.step_arms(settings, batches)
    arms = {}
    for b in batches:
        arms[f"step B={b}"] = steps[b]
        for d in dims:
            for spec in specs:
                call = method_call(spec, d, b, device)
                arms[f"{spec} D={d} B={b}"] = timing.calibrated_arm(call, device, target_s)
    samples = timing.interleaved(arms, settings.target_repeats)

    rows, results = [], []
    for b in batches:
        step = samples[f"step B={b}"]
        for d in dims:
            floor = samples[f"none D={d} B={b}"]
            for spec in specs:
                times = samples[f"{spec} D={d} B={b}"]
                vs_none = timing.ratio(times, floor)
                figures, cells = timing.share_of_step(times, step)
                results.append(
                    {
                        "method": spec,
                        "dim": d,
                        "batch": b,
                        "method_us": timing.median(times) * 1e6,
                        "over_none_module": vs_none[0],
                        **figures,
                        "width_matched": d == hidden,
                    }
                )
                rows.append(
                    [
                        spec,
                        str(d),
                        str(b),
                        f"{timing.median(times) * 1e6:.1f}",
                        timing.format_ratio(vs_none),
                        *cells,
                        models.width_cell(d, hidden),
                    ]
                )
    common.table(
        rows,
        ["method", "D", "B", "us", "/none module", "step ms", "method/step", "D = encoder width"],
    )
    print(
        f"  median of {settings.target_repeats} interleaved samples; {models.step_note(settings)}"
    )
    return {"rows": results, "encoder_hidden": hidden}


if __name__ == "__main__":
    common.run_standalone(run, __doc__)
