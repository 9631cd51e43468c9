"""The CPU proxies of each method's GPU cost: aten ops per training call (each a kernel launch on
a GPU) and host reads (each a device sync), counted with tests/op_counts.py.

A training call is the module's forward on pooled embeddings x (16, 384) float32 that require
grad, then the backward to x: of the loss term itself for a regulariser, of a random linear
loss on the output for a norm. The call runs once before it is counted (lazy set-up is not a
per-step cost).
"""

from __future__ import annotations

import pytest
import torch
from op_counts import count_ops

from isobn.methods import CorReg, IStar, Whitening

B, D = 16, 384


def training_call(module: torch.nn.Module, linear_loss: bool = False):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(B, D, generator=generator).requires_grad_()
    upstream = torch.randn(B, D, generator=generator)

    def call() -> None:
        out = module(x)
        (out * upstream).sum().backward() if linear_loss else out.backward()
        x.grad = None

    module.train()
    call()
    return call


def istar(reference: bool) -> IStar:
    module = IStar(D)
    if reference:
        module.set_reference(torch.randn(4 * D, D, generator=torch.Generator().manual_seed(1)))
    return module


@pytest.mark.parametrize(
    "name, make, limit",
    [
        # 97 ops (79 kernels) with an eigendecomposition per step before the closed form
        ("istar", lambda: istar(reference=True), 50),
        ("istar before a reference", lambda: istar(reference=False), 50),
        # 89 ops (69 kernels) and one host read per step before the written-out backward
        ("correg", lambda: CorReg(D), 50),
    ],
)
def test_regulariser_training_call_ops_and_no_host_read(name, make, limit):
    counter = count_ops(training_call(make()))
    assert counter.host_reads == 0, (name, dict(counter.ops))
    assert counter.total <= limit, (name, counter.total, dict(counter.ops))
    assert "aten._linalg_eigh" not in counter.ops and "aten.linalg_eigh" not in counter.ops


@pytest.mark.parametrize(
    "kwargs, limit",
    [
        # 20 Newton-Schulz steps: 59 matrix products, no eigendecomposition
        ({"solver": "newton"}, 115),
        ({"solver": "eigh"}, 60),
        # a step between recomputations: the step count is kept on the host
        ({"solver": "newton", "update_every": 10}, 50),
    ],
)
def test_whitening_training_call_ops_and_no_host_read(kwargs, limit):
    module = Whitening(D, **kwargs)
    call = training_call(module, linear_loss=True)
    call()  # step 2 of update_every=10 recomputes nothing
    counter = count_ops(call)
    assert counter.host_reads == 0, dict(counter.ops)
    assert counter.total <= limit, (counter.total, dict(counter.ops))
    if kwargs["solver"] == "newton":
        assert "aten._linalg_eigh" not in counter.ops and "aten.linalg_eigh" not in counter.ops


def test_whitening_update_interval_reads_the_device_once_per_load():
    module = Whitening(D, update_every=3)
    call = training_call(module, linear_loss=True)  # step 1: the step count is read once
    assert count_ops(call).host_reads == 0
    module.load_state_dict(module.state_dict())
    assert count_ops(call).host_reads == 1  # read again after loading, then counted
    assert count_ops(call).host_reads == 0
