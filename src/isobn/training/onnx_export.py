"""model.onnx of a transformers sequence classifier: logits (B, C) of the tokenizer's inputs.

``torch.onnx.export`` (the torch.export-based exporter, which needs onnxscript) traces the
model on a small padded batch; every input (input_ids, attention_mask and, where the tokenizer
makes them, token_type_ids: (B, T) int64) has dynamic batch and sequence axes, and the output
``logits`` a dynamic batch axis. The inputs are named as the tokenizer names them, so
``session.run(None, dict(tokenizer(texts, return_tensors="np")))`` feeds the session.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import torch
from torch import Tensor, nn

from isobn.errors import UserError

ONNX_FILE = "model.onnx"
ONNX_MISSING = "--onnx needs the optional packages onnx and onnxscript: pip install 'isobn[onnx]'"
_SAMPLE = ["the first text of the sample batch", "a second"]  # padded: two lengths


class _Logits(nn.Module):
    """model(**inputs).logits with the inputs as positional tensors, in the tokenizer's order."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *tensors: Tensor) -> Tensor:
        return self.model(**dict(zip(self.names, tensors, strict=True))).logits


def input_names(model: nn.Module, tokenizer) -> list[str]:
    """The tokenizer's model inputs that the model's forward accepts, in the tokenizer's order."""
    accepted = inspect.signature(model.forward).parameters
    return [name for name in tokenizer.model_input_names if name in accepted]


def check_onnx() -> None:
    """A one-line UserError when the exporter's packages are not installed."""
    for package in ("onnx", "onnxscript"):
        try:
            __import__(package)
        except ImportError:
            raise UserError(ONNX_MISSING) from None


def write_onnx(model: nn.Module, tokenizer, path: Path) -> None:
    """Export `model` (eval mode) to `path`; a one-line UserError without onnx."""
    check_onnx()
    names = input_names(model, tokenizer)
    sample = tokenizer(_SAMPLE, padding=True, return_tensors="pt")
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with _quiet():
        torch.onnx.export(
            _Logits(model, names).eval(),
            tuple(sample[name] for name in names),
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_shapes=(tuple({0: batch, 1: sequence} for _ in names),),
            dynamo=True,  # the torch.export-based exporter (the default from torch 2.9)
            external_data=_weight_bytes(model) > _PROTOBUF_LIMIT,  # model.onnx.data beside
            verbose=False,
        )


_PROTOBUF_LIMIT = 2**31 - 2**27  # one ONNX file holds under 2 GiB (a margin for the graph)


def _weight_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


class _quiet:
    """Hold the exporter's progress lines (printed and logged) and its warnings about its own
    internals while it runs."""

    def __enter__(self) -> None:
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        self._stdout = redirect_stdout(StringIO())
        self._stdout.__enter__()
        self._logger = logging.getLogger("torch.onnx")
        self._level = self._logger.level
        self._logger.setLevel(logging.ERROR)

    def __exit__(self, *exc) -> None:
        self._logger.setLevel(self._level)
        self._stdout.__exit__(*exc)
        self._warnings.__exit__(*exc)
