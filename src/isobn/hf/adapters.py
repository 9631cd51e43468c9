"""PEFT models (LoRA and the other tuners): IsoBN goes on the base model, and its state travels
with the adapter.

``peft_model.save_pretrained(d)`` saves only the adapter's weights, so IsoBN's running
statistics would be lost and a reloaded model's IsoBN would be the identity: a silent change of
predictions. [`isobn.attach`][isobn.hf.inject.attach] on a ``PeftModel`` therefore attaches
IsoBN to its base model and makes that model's ``save_pretrained`` also write
``isobn.safetensors`` and ``isobn_config.json`` next to the adapter
([`isobn.hf.save_isobn`][isobn.hf.attached.save_isobn]). A ``PeftModel`` created around a model
that already has IsoBN (``attach`` before ``get_peft_model`` or ``PeftModel.from_pretrained``)
gets the same ``save_pretrained`` when it is created
([`follow_into_peft_models`][isobn.hf.adapters.follow_into_peft_models]). Reload with::

    model = PeftModel.from_pretrained(base_model, d)
    isobn.hf.load_isobn(model, d)

Where peft wraps the head whose input IsoBN normalizes in a training wrapper (the
``classifier`` of the RoBERTa-style heads under ``task_type="SEQ_CLS"``, which keeps the
original head and a trainable copy per adapter), IsoBN sits on the wrapper: one layer with one
set of statistics, whether attach comes before or after ``get_peft_model``, and
``merge_and_unload`` hands it on to the merged head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import nn

from isobn.errors import UserError
from isobn.hf.attached import is_site, move_attachment, save_isobn
from isobn.hf.sites import is_peft_wrapper

SAVE_ATTR = "save_pretrained"  # the instance attribute that shadows PeftModel.save_pretrained


def save_with_isobn(model: nn.Module, automatic: bool = False) -> None:
    """Make ``model.save_pretrained`` (a PeftModel's) also write IsoBN's files into the
    adapter's directory; `automatic`: done when the PeftModel was created, not by attach."""
    save = _SaveWithIsobn(type(model).save_pretrained.__get__(model), automatic)
    model.__dict__[SAVE_ATTR] = save


def is_saved_with_isobn(model: nn.Module) -> bool:
    """Whether ``model.save_pretrained`` already writes IsoBN's files
    ([`save_with_isobn`][isobn.hf.adapters.save_with_isobn])."""
    return isinstance(model.__dict__.get(SAVE_ATTR), _SaveWithIsobn)


def is_saved_automatically(model: nn.Module) -> bool:
    """Whether that ``save_pretrained`` came with the PeftModel's creation, not from attach."""
    save = model.__dict__.get(SAVE_ATTR)
    return isinstance(save, _SaveWithIsobn) and save.automatic


_registration_hook = None  # torch's handle, once follow_into_peft_models has run


def follow_into_peft_models() -> None:
    """From now on in this process, IsoBN follows its model through peft: wrapped heads,
    unloaded wrappers, and PeftModels that save it with their adapter (see ``_on_registration``).
    Uses torch's global module-registration hook, which sees every submodule assignment;
    installed once."""
    global _registration_hook
    if _registration_hook is None:
        from torch.nn.modules.module import register_module_module_registration_hook

        _registration_hook = register_module_module_registration_hook(_on_registration)


def _on_registration(module: nn.Module, name: str, submodule: nn.Module | None) -> None:
    """torch's hook, run on each ``module.name = submodule`` (before the assignment):

    * peft wraps a site in a training wrapper (``ModulesToSaveWrapper``, made for the head by
      ``task_type="SEQ_CLS"`` or ``modules_to_save``; it sets ``original_module = site``):
      IsoBN moves to the wrapper before the wrapper copies the site for its adapter, so one
      layer with one set of statistics normalizes the head's input, not a stale copy of it;
    * a wrapper with IsoBN is replaced (``merge_and_unload``, ``unload``): IsoBN moves to what
      replaces it;
    * a PeftModel is made around a model with IsoBN (``get_peft_model``,
      ``PeftModel.from_pretrained``): its ``save_pretrained`` saves IsoBN with the adapter
      (``save_with_isobn(..., automatic=True)``), as attach(peft_model) would.

    It reads classes and ``__dict__`` only (a PeftModel being built recurses on attribute
    reads), and walks `submodule` only when `module` is a PeftModel.
    """
    if submodule is None:
        return None
    replaced = module.__dict__.get("_modules", {}).get(name)
    if replaced is not None and replaced is not submodule and is_peft_wrapper(replaced):
        if is_site(replaced):
            move_attachment(replaced, submodule)
        return None
    kind = type(module)
    if not kind.__module__.startswith("peft."):
        return None
    if name == "original_module" and is_site(submodule):
        move_attachment(submodule, module)
        return None
    if not hasattr(kind, "get_base_model") or SAVE_ATTR in module.__dict__:
        return None
    if any(is_site(inner) for inner in submodule.modules()):
        save_with_isobn(module, automatic=True)
    return None


def restore_save(model: nn.Module) -> None:
    """Undo [`save_with_isobn`][isobn.hf.adapters.save_with_isobn] (on detach)."""
    model.__dict__.pop(SAVE_ATTR, None)


class _SaveWithIsobn:
    """``save_pretrained(directory, ...)`` of the adapter, then
    [`save_isobn`][isobn.hf.attached.save_isobn] into the same directory (on the main process only,
    as peft writes)."""

    def __init__(self, save, automatic: bool = False) -> None:
        self.save, self.automatic = save, automatic

    def __call__(self, save_directory, *args: Any, **kwargs: Any) -> None:
        self.save(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            save_isobn(self.save.__self__, save_directory)


# --- LoRA on an encoder (isobn train --peft) ---------------------------------------------------

PEFT_MISSING = "--peft needs the optional package peft: pip install 'isobn[peft]'"


@dataclass(frozen=True)
class LoraSpec:
    """LoRA settings of ``--peft lora:r=8,alpha=16,dropout=0.1,target=query,value``.

    W x + (alpha / r) B A x on each target linear layer of the encoder (A: (r, in), B: (out, r),
    B = 0 at start); the encoder's own weights are frozen, the head stays trainable.
    """

    r: int = 8  # rank
    alpha: float = 8.0  # scaling numerator (peft's default lora_alpha)
    dropout: float = 0.0  # on the input of A
    target: tuple[str, ...] = ()  # module names; empty: peft's default for the architecture

    def canonical(self) -> str:
        parts = [f"r={self.r}", f"alpha={self.alpha:g}", f"dropout={self.dropout:g}"]
        if self.target:
            parts.append("target=" + ",".join(self.target))
        return "lora:" + ",".join(parts)


def parse_peft(text: str, option: str = "--peft") -> LoraSpec:
    """A LoRA spec from ``lora`` or ``lora:key=value,...`` (keys r, alpha, dropout, target;
    target takes a comma-separated list). One-line UserError for anything else."""
    kind, _, rest = text.strip().partition(":")
    if kind.strip().lower() != "lora":
        raise UserError(f"{option}: only lora is supported, e.g. lora:r=8,alpha=16, got {text!r}")
    values: dict[str, Any] = {}
    key = None
    for item in (part.strip() for part in rest.split(",")) if rest.strip() else ():
        if "=" not in item:
            if key != "target" or not item:
                raise UserError(f"{option}: expected key=value, got {item!r} in {text!r}")
            values["target"].append(item)
            continue
        key, raw = (s.strip() for s in item.split("=", 1))
        if key in values:
            raise UserError(f"{option}: {key!r} is given twice in {text!r}")
        values[key] = _lora_value(key, raw, option)
    if values.get("target") == [""]:
        raise UserError(f"{option}: target needs module names, e.g. target=query,value")
    values["target"] = tuple(values.get("target", ()))
    return LoraSpec(**values)


def _lora_value(key: str, raw: str, option: str) -> Any:
    rules = {
        "r": (int, lambda v: v >= 1, "an integer >= 1"),
        "alpha": (float, lambda v: v > 0 and math.isfinite(v), "a number > 0"),
        "dropout": (float, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    }
    if key == "target":
        return [raw] if raw else [""]
    if key not in rules:
        raise UserError(f"{option}: unknown lora key {key!r}; keys: r, alpha, dropout, target")
    kind, check, words = rules[key]
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not check(value):
        raise UserError(f"{option}: lora {key} must be {words}, got {raw!r}")
    return value


def require_peft(option: str = "--peft"):
    """The peft module, or a one-line UserError saying how to install it."""
    try:
        import peft
    except ImportError:
        raise UserError(PEFT_MISSING.replace("--peft", option)) from None
    return peft


def add_lora(encoder: nn.Module, spec: LoraSpec) -> nn.Module:
    """Inject LoRA layers into `encoder` in place (peft's ``inject_adapter_in_model``): only
    they are trainable in the encoder afterwards. Returns `encoder`."""
    peft = require_peft()
    config = peft.LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=list(spec.target) or None,
    )
    try:
        return peft.inject_adapter_in_model(config, encoder)
    except ValueError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"--peft {spec.canonical()}: {first}") from None
