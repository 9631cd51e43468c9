"""attach / detach: IsoBN as a child of its site, applied by a forward pre-hook."""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedModel

from isobn.hf.adapters import (
    follow_into_peft_models,
    is_saved_automatically,
    is_saved_with_isobn,
    restore_save,
    save_with_isobn,
)
from isobn.hf.attached import (
    CONFIG_KEY,
    HANDLE_ATTR,
    SAVED_KWARGS,
    attachment,
    hyperparameters,
)
from isobn.hf.sites import CHILD_NAME, base_model, find_site, is_peft_model, make_hook
from isobn.layer import IsoBN

_ALLOWED_KWARGS = (*SAVED_KWARGS, "process_group")  # process_group is not saved


def _method_kwargs(method: str) -> dict[str, Any]:
    """IsoBN arguments from a method string such as ``isobn:beta=0.25``."""
    from isobn.errors import UserError
    from isobn.methods import parse_method

    try:
        spec = parse_method(method, option="method")
    except UserError as error:
        raise ValueError(str(error)) from None
    if spec.norm.name != "isobn" or spec.regularisers:
        raise ValueError(
            f"attach adds IsoBN only: method must be isobn[:key=value,...], got {method!r}"
        )
    return spec.norm.kwargs


def attach(
    model: PreTrainedModel, method: str | None = None, **isobn_kwargs: Any
) -> PreTrainedModel:
    """Insert IsoBN before the classification head of `model`, in place; return `model`.

    Args:
        model: a sequence classifier; see [`isobn.hf`][isobn.hf] for where IsoBN sits in each
            architecture and which others the general path accepts. A peft ``PeftModel`` (e.g. LoRA)
            gets IsoBN on its base model, and its ``save_pretrained`` then also writes IsoBN's state
            next to the adapter (see [`isobn.hf.adapters`][isobn.hf.adapters]). If IsoBN was
            attached to the base model before ``get_peft_model`` wrapped it, attaching to the
            ``PeftModel`` (without arguments, or with the same settings) keeps that layer and its
            statistics and only makes the adapter's ``save_pretrained`` save them.
        method: optionally the arguments as a method string, e.g. ``"isobn:beta=0.25"``.
        **isobn_kwargs: ``momentum``, ``beta``, ``eps``, ``bias_correction``,
            ``use_correlation``, ``process_group``, as in [`IsoBN`][isobn.layer.IsoBN]. num_features
            is the size of the vector entering the head.

    The layer is created on the model's device with float32 statistics, in the model's
    train/eval mode, and its hyperparameters (all but process_group) are stored in
    ``model.config.isobn`` so that ``save_pretrained`` records them.

    Raises:
        ValueError: unsupported architecture, IsoBN already attached, or a bad method string.
        TypeError: an unknown keyword argument, or both `method` and keyword arguments.
    """
    unknown = sorted(set(isobn_kwargs) - set(_ALLOWED_KWARGS))
    if unknown:
        raise TypeError(f"unknown IsoBN arguments {unknown}; allowed: {list(_ALLOWED_KWARGS)}")
    if method is not None:
        if set(isobn_kwargs) - {"process_group"}:
            raise TypeError("give the IsoBN arguments either in `method` or as keywords, not both")
        isobn_kwargs = {**_method_kwargs(method), **isobn_kwargs}
    found = attachment(model)
    peft_model = is_peft_model(model)
    if found is not None and peft_model and not is_saved_with_isobn(model):
        return _save_attached_with_adapter(model, found[2], isobn_kwargs)
    if found is not None and peft_model and is_saved_automatically(model):
        return _save_attached_with_adapter(model, found[2], isobn_kwargs)  # as attach did
    if found is not None:
        raise ValueError(
            f"IsoBN is already attached to {type(model).__name__} (at {found[0]}.{CHILD_NAME}); "
            "call isobn.detach(model) first"
        )
    base = base_model(model)
    site = find_site(base)
    module = base.get_submodule(site.path)
    device = next(base.parameters()).device
    norm = IsoBN(site.num_features, device=device, **isobn_kwargs)
    norm.train(base.training)
    module.add_module(CHILD_NAME, norm)
    handle = module.register_forward_pre_hook(make_hook(module, site.first_token), with_kwargs=True)
    module.__dict__[HANDLE_ATTR] = handle  # copied with the module, so deepcopy stays attached
    setattr(base.config, CONFIG_KEY, hyperparameters(norm))
    if peft_model:
        save_with_isobn(model)
    follow_into_peft_models()  # a PeftModel made around `model` saves IsoBN too, and IsoBN
    return model  # stays on a head that peft wraps, copies or unwraps (merge_and_unload)


def _save_attached_with_adapter(model, norm: IsoBN, isobn_kwargs: dict) -> PreTrainedModel:
    """attach() on a PeftModel whose base got IsoBN before the wrapping: keep that layer (other
    settings are refused: they would silently not apply) and save it with the adapter."""
    current = hyperparameters(norm)
    asked = {k: v for k, v in isobn_kwargs.items() if k != "process_group"}
    differing = {k: v for k, v in asked.items() if current.get(k) != v}
    if differing:
        raise ValueError(
            f"IsoBN is already attached to the base model with {current}, not {differing}; "
            "call isobn.detach(model) first to attach it with other settings"
        )
    if "process_group" in isobn_kwargs:
        norm.process_group = isobn_kwargs["process_group"]
    save_with_isobn(model)
    return model


def detach(model: PreTrainedModel) -> PreTrainedModel:
    """Remove the IsoBN layer, its hook and ``config.isobn``; return `model`, as before attach.

    Raises:
        ValueError: no IsoBN is attached.
    """
    found = attachment(model)
    if found is None:
        raise ValueError(f"no IsoBN is attached to {type(model).__name__}")
    _, module, _ = found
    module.__dict__.pop(HANDLE_ATTR).remove()
    del module._modules[CHILD_NAME]
    config = base_model(model).config
    if hasattr(config, CONFIG_KEY):
        delattr(config, CONFIG_KEY)
    restore_save(model)
    return model
