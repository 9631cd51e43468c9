"""Save and load the IsoBN state: with the whole model (save_pretrained) or alone (peft style)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import transformers
from safetensors.torch import load_file
from torch import Tensor
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel
from transformers.utils import cached_file

from isobn import json_text
from isobn.hf.adapters import save_with_isobn
from isobn.hf.attached import (
    CONFIG_KEY,
    CONFIG_NAME,
    WEIGHTS_NAME,
    attachment,
    hyperparameters,
)
from isobn.hf.inject import attach, detach
from isobn.hf.sites import CHILD_NAME, base_model, is_peft_model
from isobn.layer import IsoBN

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


def _saved_settings(path: str | os.PathLike, kwargs: dict[str, Any]) -> PretrainedConfig:
    """The checkpoint's config, checked to hold IsoBN settings."""
    config = kwargs.get("config")
    if not isinstance(config, PretrainedConfig):
        hub = {k: kwargs[k] for k in (*_HUB_KWARGS, "trust_remote_code") if k in kwargs}
        config = AutoConfig.from_pretrained(path, **hub)
    if not isinstance(getattr(config, CONFIG_KEY, None), dict):
        raise ValueError(
            f"{path} was not saved with IsoBN attached (no `{CONFIG_KEY}` in its config); "
            "load it with AutoModelForSequenceClassification.from_pretrained"
        )
    return config


def from_pretrained(path: str | os.PathLike, **kwargs: Any) -> PreTrainedModel:
    """Load a model saved with IsoBN attached (``save_pretrained``), IsoBN state included.

    Args:
        path: directory (or hub id) written by ``save_pretrained`` of an attached model.
        **kwargs: forwarded to the architecture's ``from_pretrained`` (dtype, device_map...).

    Returns:
        The model with IsoBN re-attached from ``config.isobn`` and its buffers restored.

    Raises:
        ValueError: the checkpoint has no ``isobn`` entry in its config, its architecture is
            not a transformers class, or IsoBN cannot be attached to it.
    """
    config = _saved_settings(path, kwargs)
    name = (config.architectures or [None])[0]
    model_cls = getattr(transformers, name, None) if name else None
    if not isinstance(model_cls, type) or not issubclass(model_cls, PreTrainedModel):
        raise ValueError(
            f"{path} holds a {name}, not a transformers model class: load the model yourself "
            "and restore IsoBN with isobn.hf.load_isobn (from a save_isobn directory)"
        )
    with _isobn_keys_expected(model_cls):
        model = model_cls.from_pretrained(path, **kwargs)
    attach(model, **getattr(config, CONFIG_KEY))
    site_path, _, norm = attachment(model)
    tensors = _read_isobn_tensors(path, **{k: kwargs[k] for k in _HUB_KWARGS if k in kwargs})
    _load_buffers(norm, tensors, f"{site_path}.{CHILD_NAME}.", str(path))
    return model


# --- IsoBN-only checkpoints (peft style) ------------------------------------------------------


def load_isobn(model: PreTrainedModel, directory: str | os.PathLike) -> PreTrainedModel:
    """Attach IsoBN to `model` with the settings saved by
    [`save_isobn`][isobn.hf.attached.save_isobn]; load its buffers.

    If IsoBN is already attached with the same settings, only the buffers are loaded. A
    ``PeftModel`` (e.g. from ``PeftModel.from_pretrained(base, d)``) gets IsoBN on its base
    model, and its ``save_pretrained`` then writes IsoBN's state again.

    Raises:
        ValueError: the directory was saved from another architecture, site or vector size,
            or the attached IsoBN has other settings.
    """
    directory = Path(directory)
    saved = json_text.loads((directory / CONFIG_NAME).read_text())
    wrapper, model = model, base_model(model)
    architecture = type(model).__name__
    if saved["architecture"] != architecture:
        raise ValueError(f"{directory} holds IsoBN for {saved['architecture']}, not {architecture}")
    found = attachment(model)
    attached_here = found is None
    if attached_here:
        attach(wrapper, **saved["isobn"])
        found = attachment(model)
    elif hyperparameters(found[2]) != saved["isobn"]:
        raise ValueError(
            f"the attached IsoBN has settings {hyperparameters(found[2])}, "
            f"{directory} holds {saved['isobn']}; detach first"
        )
    site_path, _, norm = found
    prefix = f"{site_path}.{CHILD_NAME}."
    if saved["site"] + "." != prefix or saved["num_features"] != norm.num_features:
        if attached_here:
            detach(wrapper)
        raise ValueError(
            f"{directory} holds IsoBN at {saved['site']} of size {saved['num_features']}, "
            f"this model has it at {prefix[:-1]} of size {norm.num_features}"
        )
    _load_buffers(norm, load_file(directory / WEIGHTS_NAME), prefix, str(directory))
    if is_peft_model(wrapper):
        save_with_isobn(wrapper)
    return wrapper
