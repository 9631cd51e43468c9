"""`isobn train --compile`: the classifier's training forward through torch.compile.

`dynamic=True` traces the batch size and the sequence length as symbols, so the length buckets
of isobn.training.data share one graph (sizes 0 and 1 are specialised, as torch always does);
`recompile_limit` bounds the graphs a run may build, after which torch runs the forward eagerly.
Evaluation stays eager: it runs once per evaluation, in inference mode, where a second graph
would cost more compile time than it saves.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from isobn.errors import UserError

BACKEND = "inductor"  # torch's default; tests use "aot_eager" (no C++ compiler needed)
# graphs per run: training mode at sizes >= 2, a batch or a length of 1, a change of autocast
RECOMPILE_LIMIT = 4


def compile_for_training(model: nn.Module, backend: str | None = None) -> nn.Module:
    """`model` (as accelerate prepared it) wrapped by torch.compile; `uncompiled` gives it
    back. The parameters and buffers are `model`'s own, so checkpoints are unchanged."""
    return torch.compile(model, dynamic=True, backend=backend or BACKEND)


def uncompiled(model: nn.Module) -> nn.Module:
    """The module torch.compile wrapped (`model` itself when it is not compiled)."""
    return getattr(model, "_orig_mod", model)


@contextmanager
def compile_limits(enabled: bool = True):
    """torch.compile's recompile limit for the run (restored after it); a UserError naming
    --compile when the backend cannot compile (e.g. no C++ compiler for inductor). Nothing
    when not `enabled`."""
    from torch._dynamo.exc import BackendCompilerFailed

    if not enabled:
        yield
        return
    with torch._dynamo.config.patch(cache_size_limit=RECOMPILE_LIMIT):
        try:
            yield
        except BackendCompilerFailed as error:
            inner = getattr(error, "inner_exception", error)
            lines = str(inner).strip().splitlines() or [type(inner).__name__]
            message = f"--compile failed ({error.backend_name} backend: {lines[0]})"
            raise UserError(f"{message}; run without --compile") from None
