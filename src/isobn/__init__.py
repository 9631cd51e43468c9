"""isobn: fine-tune pre-trained encoders with Isotropic Batch Normalization."""

from importlib import import_module

from isobn.layer import IsoBN

__all__ = ["IsoBN", "attach", "detach", "hf", "isotropy"]
__version__ = "0.2.0"  # the one source: pyproject.toml reads it at build


def __getattr__(name: str):
    # Submodules that pull in numpy/scipy or transformers load on first use.
    if name in ("hf", "isotropy"):
        return import_module(f"isobn.{name}")
    if name in ("attach", "detach"):
        return getattr(import_module("isobn.hf"), name)
    raise AttributeError(f"module 'isobn' has no attribute {name!r}")
