"""The IsoBN attached to a model: finding it, its settings, and its IsoBN-only files (peft style:
isobn.safetensors and isobn_config.json, written by
[`save_isobn`][isobn.hf.attached.save_isobn])."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import nn

from isobn import json_text
from isobn.hf.sites import CHILD_NAME, base_model, make_hook
from isobn.layer import IsoBN

CONFIG_KEY = "isobn"  # model.config.isobn: the IsoBN hyperparameters, saved in config.json
HANDLE_ATTR = "_isobn_hook_handle"  # on the site: the RemovableHandle of the pre-hook
# Hyperparameters that attach() forwards to IsoBN and records in the config.
SAVED_KWARGS = ("momentum", "beta", "eps", "bias_correction", "use_correlation")

WEIGHTS_NAME = "isobn.safetensors"
CONFIG_NAME = "isobn_config.json"
_FORMAT_VERSION = 1


def attachment(model: nn.Module) -> tuple[str, nn.Module, IsoBN] | None:
    """(site path, site module, IsoBN layer) of an IsoBN attached by
    [`attach`][isobn.hf.inject.attach], or None. The path is relative to the transformers model
    (inside a PeftModel: its base model)."""
    for path, module in base_model(model).named_modules():
        if is_site(module):
            return path, module, module._modules[CHILD_NAME]
    return None


def is_site(module: nn.Module) -> bool:
    """Whether `module` is the site of an attached IsoBN (its child and its pre-hook)."""
    return isinstance(module._modules.get(CHILD_NAME), IsoBN) and HANDLE_ATTR in module.__dict__


def move_attachment(source: nn.Module, target: nn.Module) -> None:
    """Move the attached IsoBN, the same layer with its statistics, and its pre-hook from the
    site `source` to `target`, a module that hands its first input on to `source` unchanged
    (a peft wrapper around it) or takes its place (what replaces a wrapper on unload)."""
    handle = source.__dict__.pop(HANDLE_ATTR)
    first_token = source._forward_pre_hooks[handle.id].keywords["first_token"]
    handle.remove()
    # not add_module: its hasattr check would run a half-built peft wrapper's __getattr__
    target._modules[CHILD_NAME] = source._modules.pop(CHILD_NAME)
    hook = make_hook(target, first_token)
    target.__dict__[HANDLE_ATTR] = target.register_forward_pre_hook(hook, with_kwargs=True)


def find_isobn(model: nn.Module) -> IsoBN | None:
    """The IsoBN layer attached to `model`, or None."""
    found = attachment(model)
    return None if found is None else found[2]


def hyperparameters(norm: IsoBN) -> dict[str, Any]:
    """The JSON-serializable constructor arguments of an IsoBN layer."""
    return {key: getattr(norm, key) for key in SAVED_KWARGS}


@contextmanager
def _replaced(path: Path) -> Iterator[str]:
    """A temporary file beside `path` to write, swapped in for `path` when the block ends and
    removed if it fails (a full disk leaves the previous file, never half of a new one)."""
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_isobn(model: nn.Module, directory: str | os.PathLike) -> None:
    """Write only the attached IsoBN: buffers to isobn.safetensors, settings to isobn_config.json.

    A ``PeftModel`` saves its base model's IsoBN (its ``save_pretrained`` does this already
    once IsoBN is attached).

    Raises:
        ValueError: no IsoBN is attached.
    """
    model = base_model(model)
    found = attachment(model)
    if found is None:
        raise ValueError(f"no IsoBN is attached to {type(model).__name__}")
    site_path, _, norm = found
    prefix = f"{site_path}.{CHILD_NAME}."
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {prefix + k: v.detach().cpu().contiguous() for k, v in norm.state_dict().items()}
    with _replaced(directory / WEIGHTS_NAME) as tmp:
        save_file(tensors, tmp, metadata={"format": "pt"})
    config = {
        "format_version": _FORMAT_VERSION,
        "architecture": type(model).__name__,
        "site": f"{site_path}.{CHILD_NAME}",
        "num_features": norm.num_features,
        "isobn": hyperparameters(norm),
    }
    with _replaced(directory / CONFIG_NAME) as tmp:
        Path(tmp).write_text(json_text.dumps(config, indent=2) + "\n")
