"""The state a checkpoint holds for each method keeps its keys, order, dtypes, shapes and version.

The lists below were read from the modules as they were before their running estimates moved to
a shared base class (commit f4bdb12): saved checkpoints and run directories hold exactly these
tensors, so any change here breaks loading and resuming them.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from isobn.layer import IsoBN
from isobn.methods import IStar, Whitening

D = 5
F32, F64, LONG = torch.float32, torch.float64, torch.int64


def isobn_state(dtype):
    return [
        ("running_std", dtype, (D,)),
        ("running_cov", dtype, (D, D)),
        ("num_batches_tracked", LONG, ()),
    ]


def whitening_state(dtype):
    return [
        ("running_mean", dtype, (D,)),
        ("running_cov", dtype, (D, D)),
        ("whitening_matrix", dtype, (D, D)),
        ("num_batches_tracked", LONG, ()),
    ]


def istar_state(dtype):
    return [("reference_cov", dtype, (D, D)), ("reference_count", LONG, ())]


# (module, its state); .half() leaves every state's dtypes as they are
CASES = [
    (lambda: IsoBN(D), isobn_state(F32)),
    (lambda: IsoBN(D, momentum=None, bias_correction=False), isobn_state(F32)),
    (lambda: IsoBN(D, dtype=F64), isobn_state(F64)),
    (lambda: Whitening(D), whitening_state(F32)),
    (lambda: Whitening(D, backprop=True, update_every=2, dtype=F64), whitening_state(F64)),
    (lambda: IStar(D), istar_state(F32)),
    (lambda: IStar(D, dtype=F64), istar_state(F64)),
]


def trained(make) -> nn.Module:
    """A module built with a fixed seed that has seen three training batches (and a reference)."""
    torch.manual_seed(0)
    module = make().train()
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(8, D, generator=g) for _ in range(3)]
    if isinstance(module, IStar):
        module.set_reference(torch.cat(batches))
    for x in batches:
        module(x)
    return module


def layout(state: dict) -> list[tuple[str, torch.dtype, tuple[int, ...]]]:
    return [(key, value.dtype, tuple(value.shape)) for key, value in state.items()]


@pytest.mark.parametrize("make, expected", CASES)
def test_state_dict_keeps_its_keys_dtypes_shapes_and_version(make, expected):
    module = trained(make)
    state = module.state_dict()
    assert layout(state) == expected
    assert state._metadata[""]["version"] == 1  # _version, read by migrations
    for half in (torch.float16, torch.bfloat16):  # running statistics never follow a half cast
        assert layout(trained(make).to(half).state_dict()) == expected
    restored = make()
    restored.load_state_dict(state, strict=True)
    for key, value in state.items():
        assert torch.equal(restored.state_dict()[key], value), key


def test_counters_count_what_they_did():
    assert trained(lambda: IsoBN(D)).num_batches_tracked.item() == 3
    assert trained(lambda: Whitening(D)).num_batches_tracked.item() == 3
    assert trained(lambda: IStar(D)).reference_count.item() == 24
