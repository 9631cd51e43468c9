"""CPU proxies of GPU cost: the aten ops a call dispatches (each is a kernel launch on a GPU)
and the reads of a tensor's value by the host (each is a device sync on a GPU).

``count_ops(fn)`` runs ``fn()`` under a ``TorchDispatchMode`` that sees every aten op below
autograd, the backward's included. A host read is ``aten._local_scalar_dense``: what
``.item()``, ``bool(t)``, ``int(t)`` and ``float(t)`` of a tensor dispatch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from torch.utils._python_dispatch import TorchDispatchMode

HOST_READ = "aten._local_scalar_dense"
# metadata-only ops that launch no kernel on any device
VIEWS = {
    "aten.detach",
    "aten.view",
    "aten._unsafe_view",
    "aten.t",
    "aten.transpose",
    "aten.expand",
    "aten.alias",
    "aten.unsqueeze",
    "aten.squeeze",
    "aten.slice",
    "aten.select",
    "aten.diagonal",
    "aten.as_strided",
    "aten.permute",
    "aten.reshape",
}


class OpCounter(TorchDispatchMode):
    """Counts aten ops by overload packet name (``aten.mm``), in the order they ran."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.ops.values())

    @property
    def kernels(self) -> int:
        """Ops that are not views (each launches at least one kernel on a GPU)."""
        return sum(n for name, n in self.ops.items() if name not in VIEWS)

    @property
    def host_reads(self) -> int:
        return self.ops[HOST_READ]


def count_ops(fn: Callable[[], object]) -> OpCounter:
    """Run ``fn()`` once under an :class:`OpCounter` and return the counter."""
    with OpCounter() as counter:
        fn()
    return counter
