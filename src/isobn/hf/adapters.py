"""PEFT models (LoRA and the other tuners): IsoBN goes on the base model, and its state travels
with the adapter.

``peft_model.save_pretrained(d)`` saves only the adapter's weights, so IsoBN's running
statistics would be lost and a reloaded model's IsoBN would be the identity: a silent change of
predictions. :func:`isobn.attach` on a ``PeftModel`` therefore attaches IsoBN to its base model
and makes that model's ``save_pretrained`` also write ``isobn.safetensors`` and
``isobn_config.json`` next to the adapter (:func:`isobn.hf.save_isobn`). Reload with::

    model = PeftModel.from_pretrained(base_model, d)
    isobn.hf.load_isobn(model, d)

peft's own ``modules_to_save`` would wrap the layer in a trainable copy per adapter, which
IsoBN (no parameters, one set of statistics) does not need.
"""

from __future__ import annotations

from typing import Any

from torch import nn

SAVE_ATTR = "save_pretrained"  # the instance attribute that shadows PeftModel.save_pretrained


def is_peft_model(model: nn.Module) -> bool:
    """Whether `model` is a peft ``PeftModel`` (checked without importing peft)."""
    return type(model).__module__.startswith("peft.") and hasattr(model, "get_base_model")


def base_model(model: nn.Module) -> nn.Module:
    """The transformers model inside a ``PeftModel`` (LoRA layers included); `model` itself
    otherwise. IsoBN is attached to, saved from and loaded into this model."""
    return model.get_base_model() if is_peft_model(model) else model


def save_with_isobn(model: nn.Module) -> None:
    """Make ``model.save_pretrained`` (a PeftModel's) also write IsoBN's files into the
    adapter's directory."""
    model.__dict__[SAVE_ATTR] = _SaveWithIsobn(type(model).save_pretrained.__get__(model))


def restore_save(model: nn.Module) -> None:
    """Undo :func:`save_with_isobn` (on detach)."""
    model.__dict__.pop(SAVE_ATTR, None)


class _SaveWithIsobn:
    """``save_pretrained(directory, ...)`` of the adapter, then :func:`save_isobn` into the same
    directory (on the main process only, as peft writes)."""

    def __init__(self, save) -> None:
        self.save = save

    def __call__(self, save_directory, *args: Any, **kwargs: Any) -> None:
        from isobn.hf.persist import save_isobn

        self.save(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            save_isobn(self.save.__self__, save_directory)
