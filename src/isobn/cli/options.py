"""The command line built from the settings' dataclass fields (isobn.training.config): one option
per
field, with the field's flag, type, default, choices and help. Nothing here repeats a default.

    add_options(parser, TrainConfig, exclude={...})   the fields as options, grouped
    add_method_options(parser, TrainConfig)           --method (or --methods)
    config_from_args(TrainConfig, args)               the dataclass from parsed arguments
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import MISSING, fields
from typing import Any

from isobn.training.config import DataOptions, flag_of

# argument groups in the order `--help` shows them
GROUPS = ("run", "data", "model", "method", "training")


def add_options(parser: argparse.ArgumentParser, cls, exclude=()) -> None:
    """One option per field of the dataclass `cls` (but `exclude` and `method`), in the field's
    group; a field without a default is a required option."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    chosen = [f for f in fields(cls) if f.name not in exclude and f.name != "method"]
    for name in sorted({f.metadata["group"] for f in chosen}, key=_group_order):
        groups[name] = parser.add_argument_group(name)
    hints = typing.get_type_hints(cls)
    for f in chosen:
        add_field_option(groups[f.metadata["group"]], f, hints[f.name])


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """The data options (isobn.training.config.DataOptions), shared by train, experiment and
    analyze."""
    add_options(parser, DataOptions)


def add_setting(
    group, cls, name: str, default: Any = MISSING, default_text: str | None = None, **extra
) -> None:
    """The option of field `name` of `cls` in a command that is not built from `cls`: the
    field's flag and help text (written once, where the setting is defined), with this
    command's `default`; `default_text` says a default that is worked out at run time."""
    f = next(f for f in fields(cls) if f.name == name)
    annotation = typing.get_type_hints(cls)[name]
    add_field_option(group, f, annotation, default=default, default_text=default_text, **extra)


def add_field_option(
    group,
    f,
    annotation,
    flags: tuple[str, ...] = (),
    default: Any = MISSING,
    default_text: str | None = None,
    **extra,
) -> None:
    """The option of one dataclass field: store_true for a bool, else a typed value; its
    help is the field's, and `(default X)` (the field's default, or `default`)."""
    meta = f.metadata
    help_text = meta["help"]() if callable(meta["help"]) else meta["help"]
    default = f.default if default is MISSING else default
    kwargs = {"dest": f.name, "help": help_text}
    kind = _value_type(annotation)
    if kind is bool:
        kwargs["action"] = "store_true"
    else:
        flag = flags[0] if flags else flag_of(f)
        metavar = meta.get("metavar") or flag.lstrip("-").upper().replace("-", "_")
        choices = meta.get("choices")
        kwargs.update(type=kind, metavar=None if choices else metavar, choices=choices)
        if default_text is not None:
            kwargs["help"] = f"{help_text} (default: {default_text})"
        elif default is not None and default is not MISSING and "default" not in help_text:
            kwargs["help"] = f"{help_text} (default {default})"
    if default is MISSING:
        kwargs["required"] = True
    else:
        kwargs["default"] = default
    kwargs.update(extra)
    group.add_argument(*(flags or (flag_of(f),)), **kwargs)


def add_method_options(parser: argparse.ArgumentParser, cls, multiple: bool = False) -> None:
    """--method (from the field), or --methods, a comma-separated list, when `multiple`."""
    group = parser.add_argument_group("method")
    if multiple:
        group.add_argument(
            "--methods",
            default="none,isobn",
            help="comma-separated methods, each as --method of `isobn train` (default none,isobn)",
        )
    else:
        method = next(f for f in fields(cls) if f.name == "method")
        add_field_option(group, method, str)


def config_values(args: argparse.Namespace, cls=None) -> dict:
    """The parsed values of the fields of `cls` (TrainConfig by default)."""
    if cls is None:
        from isobn.training.config import TrainConfig as cls
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names}


def config_from_args(cls, args: argparse.Namespace):
    return cls(**config_values(args, cls))


def _value_type(annotation) -> type:
    """int for `int` and `int | None`, and so on."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (kind,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return kind
    return annotation


def _group_order(name: str) -> int:
    return GROUPS.index(name) if name in GROUPS else len(GROUPS)
