"""Attach IsoBN to Hugging Face sequence classifiers, detach it, save and load its state.

IsoBN goes on the pooled sentence vector right before the classification head, as in the
paper's released code (pooled output -> IsoBN -> dropout -> linear). Like peft's LayerNorm
tuner the injection is reversible and replaces no existing module: the :class:`~isobn.IsoBN`
layer becomes a child named ``isobn`` of the module whose input it normalizes (the *site*),
and a forward pre-hook on the site applies it. Every original parameter keeps its name, so a
checkpoint of the attached model still loads into the plain architecture, and
:func:`detach` gives back exactly the model that went in (same module objects).

Supported architectures (``type(model).__name__``), the site, and the data path:

* BertForSequenceClassification, site ``dropout``:
  pooler_output (B, D) -> IsoBN -> dropout -> classifier.
* DistilBertForSequenceClassification, site ``pre_classifier``:
  hidden[:, 0] (B, D) -> IsoBN -> pre_classifier -> ReLU -> dropout -> classifier.
* RobertaForSequenceClassification and XLMRobertaForSequenceClassification, site ``classifier``:
  hidden[:, 0] (B, D) -> IsoBN -> head (dropout -> dense -> tanh -> dropout -> out_proj).
* ElectraForSequenceClassification, site ``classifier``:
  hidden[:, 0] (B, D) -> IsoBN -> head (dropout -> dense -> gelu -> dropout -> out_proj).

For the RoBERTa-style heads, which take the whole sequence (B, T, D) and read only its first
token, IsoBN normalizes the [CLS] (``<s>``) vector (B, D) and the head receives it as a
one-token sequence (B, 1, D): the head computes exactly what it would on the full sequence.

Persistence, two ways:

* Whole model: ``attach`` records its hyperparameters in ``model.config.isobn``, so
  ``model.save_pretrained(dir)`` writes them to config.json and the IsoBN buffers to
  model.safetensors (keys ``<site>.isobn.running_std`` ...). Reload with
  ``isobn.hf.from_pretrained(dir)``. A plain ``AutoModelForSequenceClassification
  .from_pretrained(dir)`` loads the model without IsoBN and lists those keys as unexpected.
* IsoBN only (peft style): ``save_isobn(model, dir)`` writes isobn.safetensors and
  isobn_config.json; ``load_isobn(base_model, dir)`` attaches and restores them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import transformers
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel
from transformers.utils import cached_file

from isobn.layer import IsoBN

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "attach",
    "detach",
    "find_isobn",
    "from_pretrained",
    "load_isobn",
    "save_isobn",
]

CONFIG_KEY = "isobn"  # model.config.isobn: the IsoBN hyperparameters, saved in config.json
CHILD_NAME = "isobn"  # name of the IsoBN submodule under its site
WEIGHTS_NAME = "isobn.safetensors"
CONFIG_NAME = "isobn_config.json"
_FORMAT_VERSION = 1

# Hyperparameters that attach() forwards to IsoBN; all but process_group go into the config.
_SAVED_KWARGS = ("momentum", "beta", "eps", "bias_correction", "use_correlation")
_ALLOWED_KWARGS = (*_SAVED_KWARGS, "process_group")
# Checkpoint keys of an attached IsoBN, which the plain architecture does not expect.
_ISOBN_KEY_PATTERN = rf"(^|\.){CHILD_NAME}\.(running_std|running_cov|num_batches_tracked)$"
# What from_pretrained forwards to hub file look-ups.
_HUB_KWARGS = (
    "cache_dir",
    "force_download",
    "proxies",
    "token",
    "revision",
    "local_files_only",
    "subfolder",
)


def _replace_input(
    args: tuple, kwargs: dict, name: str, fn: Callable[[Tensor], Tensor]
) -> tuple[tuple, dict]:
    """Apply fn to the site's first input, passed positionally or as keyword `name`."""
    if args:
        return (fn(args[0]), *args[1:]), kwargs
    if name in kwargs:
        return args, {**kwargs, name: fn(kwargs[name])}
    raise RuntimeError(f"IsoBN pre-hook: the module got no input (expected `{name}`)")


def _pooled_hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Site input is the pooled vector (B, D): normalize it."""
    norm = module._modules[CHILD_NAME]  # the site's own child, so replicas use their copy
    return _replace_input(args, kwargs, "input", norm)


def _first_token_hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Site input is a sequence (B, T, D) of which the head reads token 0: pass (B, 1, D)."""
    norm = module._modules[CHILD_NAME]

    def normalize_cls(features: Tensor) -> Tensor:
        return norm(features[:, 0, :]).unsqueeze(1)  # (B, D) -> (B, 1, D)

    return _replace_input(args, kwargs, "features", normalize_cls)


_HOOKS = (_pooled_hook, _first_token_hook)


@dataclass(frozen=True)
class _Site:
    """Where IsoBN goes in one architecture."""

    path: str  # attribute path of the module whose input IsoBN normalizes
    module_type: str  # class name expected there: guards against upstream refactors
    first_token: bool  # the site takes (B, T, D) and reads token 0 only


_SITES: dict[str, _Site] = {
    "BertForSequenceClassification": _Site("dropout", "Dropout", False),
    "DistilBertForSequenceClassification": _Site("pre_classifier", "Linear", False),
    "RobertaForSequenceClassification": _Site("classifier", "RobertaClassificationHead", True),
    "XLMRobertaForSequenceClassification": _Site(
        "classifier", "XLMRobertaClassificationHead", True
    ),
    "ElectraForSequenceClassification": _Site("classifier", "ElectraClassificationHead", True),
}
SUPPORTED_ARCHITECTURES: tuple[str, ...] = tuple(_SITES)


def _site_of(model: nn.Module) -> tuple[_Site, nn.Module]:
    """The site spec and module of a supported model; ValueError otherwise."""
    name = type(model).__name__
    site = _SITES.get(name)
    if site is None:
        raise ValueError(
            f"IsoBN cannot be attached to {name}: supported architectures are "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    module = model.get_submodule(site.path)
    if type(module).__name__ != site.module_type:
        raise ValueError(
            f"{name}.{site.path} is a {type(module).__name__}, expected {site.module_type}: "
            "this transformers version changed the classification head"
        )
    return site, module


def find_isobn(model: nn.Module) -> IsoBN | None:
    """The IsoBN layer attached to `model`, or None (also for unsupported architectures)."""
    site = _SITES.get(type(model).__name__)
    if site is None:
        return None
    try:
        module = model.get_submodule(site.path)
    except AttributeError:
        return None
    norm = module._modules.get(CHILD_NAME)
    return norm if isinstance(norm, IsoBN) else None


def _hyperparameters(norm: IsoBN) -> dict[str, Any]:
    """The JSON-serializable constructor arguments of an IsoBN layer."""
    return {key: getattr(norm, key) for key in _SAVED_KWARGS}


def attach(model: PreTrainedModel, **isobn_kwargs: Any) -> PreTrainedModel:
    """Insert IsoBN before the classification head of `model`, in place; return `model`.

    Args:
        model: one of :data:`SUPPORTED_ARCHITECTURES` (see the module docstring for where
            IsoBN sits in each).
        **isobn_kwargs: ``momentum``, ``beta``, ``eps``, ``bias_correction``,
            ``use_correlation``, ``process_group``, as in :class:`~isobn.IsoBN`. num_features is
            ``config.hidden_size``.

    The layer is created on the model's device with float32 statistics, in the model's
    train/eval mode, and its hyperparameters (all but process_group) are stored in
    ``model.config.isobn`` so that ``save_pretrained`` records them.

    Raises:
        ValueError: unsupported architecture, or IsoBN already attached.
        TypeError: an unknown keyword argument.
    """
    unknown = sorted(set(isobn_kwargs) - set(_ALLOWED_KWARGS))
    if unknown:
        raise TypeError(f"unknown IsoBN arguments {unknown}; allowed: {list(_ALLOWED_KWARGS)}")
    site, module = _site_of(model)
    if CHILD_NAME in module._modules:
        raise ValueError(
            f"IsoBN is already attached to {type(model).__name__} (at {site.path}.{CHILD_NAME}); "
            "call isobn.detach(model) first"
        )
    device = next(model.parameters()).device
    norm = IsoBN(model.config.hidden_size, device=device, **isobn_kwargs)
    norm.train(model.training)
    module.add_module(CHILD_NAME, norm)
    hook = _first_token_hook if site.first_token else _pooled_hook
    module.register_forward_pre_hook(hook, with_kwargs=True)
    setattr(model.config, CONFIG_KEY, _hyperparameters(norm))
    return model


def detach(model: PreTrainedModel) -> PreTrainedModel:
    """Remove the IsoBN layer, its hook and ``config.isobn``; return `model`, as before attach.

    Raises:
        ValueError: no IsoBN is attached.
    """
    if find_isobn(model) is None:
        raise ValueError(f"no IsoBN is attached to {type(model).__name__}")
    _, module = _site_of(model)
    for hook_id, hook in list(module._forward_pre_hooks.items()):
        if hook in _HOOKS:
            del module._forward_pre_hooks[hook_id]
            module._forward_pre_hooks_with_kwargs.pop(hook_id, None)
    del module._modules[CHILD_NAME]
    if hasattr(model.config, CONFIG_KEY):
        delattr(model.config, CONFIG_KEY)
    return model


# --- whole-model checkpoints (save_pretrained) ------------------------------------------------


@contextmanager
def _isobn_keys_expected(model_cls: type[PreTrainedModel]) -> Iterator[None]:
    """Tell HF loading that IsoBN buffer keys in the checkpoint are not unexpected.

    HF copies the class attribute onto each instance in post_init; it is restored on exit
    (a model of the same class built concurrently in another thread would share it).
    """
    had_own = "_keys_to_ignore_on_load_unexpected" in model_cls.__dict__
    before = model_cls.__dict__.get("_keys_to_ignore_on_load_unexpected")
    inherited = model_cls._keys_to_ignore_on_load_unexpected
    model_cls._keys_to_ignore_on_load_unexpected = [*(inherited or ()), _ISOBN_KEY_PATTERN]
    try:
        yield
    finally:
        if had_own:
            model_cls._keys_to_ignore_on_load_unexpected = before
        else:
            del model_cls._keys_to_ignore_on_load_unexpected


def _read_isobn_tensors(path: str | os.PathLike, **hub_kwargs: Any) -> dict[str, Tensor]:
    """The IsoBN buffers stored in a save_pretrained checkpoint (single file or sharded)."""
    lookup = {**hub_kwargs, "_raise_exceptions_for_missing_entries": False}
    pattern = re.compile(_ISOBN_KEY_PATTERN)
    single = cached_file(path, "model.safetensors", **lookup)
    if single is not None:
        files = [single]
    else:
        index = cached_file(path, "model.safetensors.index.json", **lookup)
        if index is None:
            raise ValueError(f"{path} has no safetensors checkpoint with the IsoBN buffers")
        weight_map = json.loads(Path(index).read_text())["weight_map"]
        shards = sorted({shard for key, shard in weight_map.items() if pattern.search(key)})
        files = [cached_file(path, shard, **hub_kwargs) for shard in shards]
    tensors: dict[str, Tensor] = {}
    for file in files:
        tensors.update({k: v for k, v in load_file(file).items() if pattern.search(k)})
    return tensors


def _load_buffers(norm: IsoBN, tensors: dict[str, Tensor], prefix: str, source: str) -> None:
    """Load `prefix`-named buffers from `tensors` into `norm`, strictly."""
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not state:
        raise ValueError(f"{source} holds no IsoBN buffers under {prefix!r}")
    norm.load_state_dict(state, strict=True)


def from_pretrained(path: str | os.PathLike, **kwargs: Any) -> PreTrainedModel:
    """Load a model saved with IsoBN attached (``save_pretrained``), IsoBN state included.

    Args:
        path: directory (or hub id) written by ``save_pretrained`` of an attached model.
        **kwargs: forwarded to the architecture's ``from_pretrained`` (dtype, device_map...).

    Returns:
        The model with IsoBN re-attached from ``config.isobn`` and its buffers restored.

    Raises:
        ValueError: the checkpoint has no ``isobn`` entry in its config, or an unsupported
            architecture.
    """
    config = kwargs.get("config")
    if not isinstance(config, PretrainedConfig):
        hub = {k: kwargs[k] for k in (*_HUB_KWARGS, "trust_remote_code") if k in kwargs}
        config = AutoConfig.from_pretrained(path, **hub)
    saved = getattr(config, CONFIG_KEY, None)
    if not isinstance(saved, dict):
        raise ValueError(
            f"{path} was not saved with IsoBN attached (no `{CONFIG_KEY}` in its config); "
            "load it with AutoModelForSequenceClassification.from_pretrained"
        )
    name = (config.architectures or [None])[0]
    if name not in _SITES:
        raise ValueError(
            f"{path} holds a {name}: supported architectures are "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    model_cls = getattr(transformers, name)
    with _isobn_keys_expected(model_cls):
        model = model_cls.from_pretrained(path, **kwargs)
    attach(model, **saved)
    tensors = _read_isobn_tensors(path, **{k: kwargs[k] for k in _HUB_KWARGS if k in kwargs})
    prefix = f"{_SITES[name].path}.{CHILD_NAME}."
    _load_buffers(find_isobn(model), tensors, prefix, str(path))
    return model


# --- IsoBN-only checkpoints (peft style) ------------------------------------------------------


def save_isobn(model: PreTrainedModel, directory: str | os.PathLike) -> None:
    """Write only the attached IsoBN: buffers to isobn.safetensors, settings to isobn_config.json.

    Raises:
        ValueError: no IsoBN is attached.
    """
    norm = find_isobn(model)
    if norm is None:
        raise ValueError(f"no IsoBN is attached to {type(model).__name__}")
    architecture = type(model).__name__
    site = _SITES[architecture]
    prefix = f"{site.path}.{CHILD_NAME}."
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {prefix + k: v.detach().cpu().contiguous() for k, v in norm.state_dict().items()}
    save_file(tensors, directory / WEIGHTS_NAME, metadata={"format": "pt"})
    config = {
        "format_version": _FORMAT_VERSION,
        "architecture": architecture,
        "site": f"{site.path}.{CHILD_NAME}",
        "num_features": norm.num_features,
        "isobn": _hyperparameters(norm),
    }
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")


def load_isobn(model: PreTrainedModel, directory: str | os.PathLike) -> PreTrainedModel:
    """Attach IsoBN to `model` with the settings saved by :func:`save_isobn`; load its buffers.

    If IsoBN is already attached with the same settings, only the buffers are loaded.

    Raises:
        ValueError: the directory was saved from another architecture or hidden size, or the
            attached IsoBN has other settings.
    """
    directory = Path(directory)
    saved = json.loads((directory / CONFIG_NAME).read_text())
    architecture = type(model).__name__
    if saved["architecture"] != architecture:
        raise ValueError(f"{directory} holds IsoBN for {saved['architecture']}, not {architecture}")
    if saved["num_features"] != model.config.hidden_size:
        raise ValueError(
            f"{directory} holds IsoBN for hidden size {saved['num_features']}, "
            f"the model has {model.config.hidden_size}"
        )
    norm = find_isobn(model)
    if norm is None:
        attach(model, **saved["isobn"])
        norm = find_isobn(model)
    elif _hyperparameters(norm) != saved["isobn"]:
        raise ValueError(
            f"the attached IsoBN has settings {_hyperparameters(norm)}, "
            f"{directory} holds {saved['isobn']}; detach first"
        )
    prefix = f"{_SITES[architecture].path}.{CHILD_NAME}."
    _load_buffers(norm, load_file(directory / WEIGHTS_NAME), prefix, str(directory))
    return model
