"""CUDA path check: each method's modules on a device against the same modules on the CPU.

    python benchmarks/cuda_check.py            # on a machine with a GPU
    python benchmarks/cuda_check.py --device cpu   # the check itself (every difference is 0)

Five training batches then eval, float32; outputs, input gradients, regulariser losses and the
state_dict (moved back to the CPU) are compared. The upstream gradient differs per row and
dimension: with one constant per dimension, BatchNorm's true input gradient is exactly 0 and
a relative difference would compare float32 round-off on the two devices. Prints one line per
method and the worst relative difference; exits 1 if any exceeds the tolerance.
"""

import argparse
import sys

import torch

from isobn.methods import parse_method

SPECS = [
    "none",
    "isobn",
    "isobn:bias_correction=false",
    "isobn:use_correlation=false",
    "isobn:beta=0.25",
    "batchnorm",
    "layernorm",
    "whitening",
    "whitening:backprop=true",
    "whitening:update_every=3",
    "correg:weight=0.04",
    "istar:weight=-5,zeta=0.2",
    "isobn+correg:weight=0.04",
]
TOL = 2e-3


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).abs().max() / (b.abs().max() + 1e-12))


def run(
    spec_text: str,
    device: torch.device,
    d: int,
    data: list[torch.Tensor],
    ref: torch.Tensor,
    upstream: torch.Tensor,
):
    spec = parse_method(spec_text)
    torch.manual_seed(0)
    norm = spec.norm.build(d).to(device).train()
    regs = [part.build(d).to(device).train() for part in spec.regularisers]
    for reg in regs:
        if hasattr(reg, "set_reference"):
            reg.set_reference(ref.to(device))
    outs, grads, losses = [], [], []
    for x in data:
        x = x.detach().to(device).clone().requires_grad_()
        y = norm(x)
        loss = (y * upstream.to(device)).sum()  # d loss / d y = upstream (B, D)
        extra = sum((reg(x) for reg in regs), torch.zeros((), device=device))
        (loss + extra).backward()
        outs.append(y.detach())
        grads.append(x.grad.detach())
        losses.append(extra.detach())
    norm.eval()
    outs.append(norm(data[0].to(device)).detach())
    state = {k: v.detach().cpu() for k, v in norm.state_dict().items()}
    return outs, grads, losses, state


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="compared with the CPU (default cuda)")
    device = torch.device(parser.parse_args().device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run this on a machine with a GPU (or --device cpu)")
        return 2
    gen = torch.Generator().manual_seed(1)
    worst_all = 0.0
    for d in (384, 768):
        base = torch.randn(d, d, generator=gen) / d**0.5
        data = [torch.randn(32, d, generator=gen) @ base * 0.05 for _ in range(5)]
        data[0][:, 0] = 0.0  # a dead dimension
        ref = torch.randn(512, d, generator=gen) @ base * 0.05
        upstream = torch.randn(32, d, generator=gen)
        for spec in SPECS:
            cpu = run(spec, torch.device("cpu"), d, data, ref, upstream)
            gpu = run(spec, device, d, data, ref, upstream)
            diffs = [rel(g, c) for g, c in zip(gpu[0] + gpu[1] + gpu[2], cpu[0] + cpu[1] + cpu[2])]
            state_diffs = [rel(gpu[3][k].float(), cpu[3][k].float()) for k in cpu[3]]
            finite = all(torch.isfinite(t).all() for t in gpu[0] + gpu[1])
            worst = max(diffs + state_diffs)
            worst_all = max(worst_all, worst)
            keys_same = list(gpu[3]) == list(cpu[3])
            print(
                f"D={d} {spec:28s} worst rel diff {worst:.2e} finite={finite} keys_same={keys_same}"
            )
            if not finite or not keys_same or worst > TOL:
                print(f"FAIL {spec} D={d}")
                return 1
    print(
        f"all methods agree on {device} and CPU: worst relative difference {worst_all:.2e} "
        f"(tol {TOL})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
