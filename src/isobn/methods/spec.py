"""Method specs: one string says how a run treats the pooled embedding.

    spec  := part ('+' part)*
    part  := name [':' key '=' value (',' key '=' value)*]

e.g. ``none``, ``isobn``, ``isobn:beta=0.25``, ``isobn:bias_correction=false``, ``layernorm``,
``whitening:update_every=4``, ``whitening:solver=eigh``, ``correg:weight=0.04``,
``istar:weight=-5,zeta=0.2``, ``isobn+correg``.
A *norm* is a module between the pooled embedding and the classifier (at most one per spec);
a *regulariser* adds a loss term on the pooled embedding (several may follow a norm): its
module's ``forward(pooled (B, D))`` returns the already-weighted scalar, and it may have
``set_reference(pooled (N, D))``. Both are built as ``factory(num_features, **kwargs)`` and keep
any running state in buffers.
Parameters carry the constructor's own argument names, and their defaults are read from the
constructor's signature, so each default is written once, where the module is defined.

The canonical form (``str(spec)``) drops parameters equal to their default and sorts the
rest, so equal methods have equal names in config.json, result tables and study cells.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from isobn.errors import UserError
from isobn.layer import IsoBN
from isobn.methods.correg import CorReg
from isobn.methods.istar import IStar
from isobn.methods.whitening import SOLVERS, Whitening

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@dataclass(frozen=True)
class Param:
    """One parameter of a method: its type, the rule its value obeys, and that rule in words."""

    kind: type  # float, int, bool or str
    check: Callable[[Any], bool] = lambda value: True
    rule: str = ""
    allow_none: bool = False  # `key=none` passes None (e.g. IsoBN's cumulative momentum)


@dataclass(frozen=True)
class MethodDef:
    """A method's name, role, parameters and defaults (from `factory`'s signature)."""

    name: str
    role: str  # "norm" or "regulariser"
    summary: str
    params: dict[str, Param] = field(default_factory=dict)
    # the module class, built as factory(num_features, **kwargs); its signature holds the
    # defaults. None: the identity (norm `none`).
    factory: Callable[..., nn.Module] | None = None

    def defaults(self) -> dict[str, Any]:
        if self.factory is None:
            return {}
        signature = inspect.signature(self.factory)
        return {name: signature.parameters[name].default for name in self.params}


_momentum = Param(float, lambda v: 0 < v <= 1, "in (0, 1]")
_positive = Param(float, lambda v: v > 0, "> 0")

METHODS: dict[str, MethodDef] = {
    "none": MethodDef("none", "norm", "the pooled embedding as it is"),
    "isobn": MethodDef(
        "isobn",
        "norm",
        "IsoBN (Zhou et al., AAAI 2021): shrink large, correlated dimensions",
        {
            "momentum": Param(float, lambda v: 0 < v <= 1, "in (0, 1] or none", allow_none=True),
            "beta": Param(float, lambda v: v >= 0, ">= 0"),
            "eps": _positive,
            "bias_correction": Param(bool),
            "use_correlation": Param(bool),
        },
        IsoBN,
    ),
    "batchnorm": MethodDef(
        "batchnorm",
        "norm",
        "BatchNorm1d with its affine parameters",
        {"momentum": _momentum, "eps": _positive},
        nn.BatchNorm1d,
    ),
    "layernorm": MethodDef(
        "layernorm",
        "norm",
        "LayerNorm with its affine parameters",
        {"eps": _positive},
        nn.LayerNorm,
    ),
    "whitening": MethodDef(
        "whitening",
        "norm",
        "ZCA whitening from running estimates (Decorrelated BN, Huang et al., CVPR 2018)",
        {
            "momentum": Param(float, lambda v: 0 < v <= 1, "in (0, 1] or none", allow_none=True),
            "eps": _positive,
            "bias_correction": Param(bool),
            "backprop": Param(bool),
            "update_every": Param(int, lambda v: v >= 1, ">= 1"),
            "solver": Param(str, lambda v: v in SOLVERS, "one of " + ", ".join(SOLVERS)),
            "iterations": Param(int, lambda v: v >= 1, ">= 1"),
        },
        Whitening,
    ),
    "correg": MethodDef(
        "correg",
        "regulariser",
        "Cor-Reg (Zhang et al., NAACL 2022): weight * ||Corr(X_b) - I||_F",
        {"weight": Param(float, lambda v: v >= 0, ">= 0")},
        CorReg,
    ),
    "istar": MethodDef(
        "istar",
        "regulariser",
        "I-STAR (Rudman & Eickhoff, ICLR 2024): weight * (1 - IsoScore*(X_b))",
        {"weight": Param(float), "zeta": Param(float, lambda v: 0 <= v <= 1, "in [0, 1]")},
        IStar,
    ),
}

# earlier spellings of `--norm`, kept working
ALIASES = {"isobn-legacy": "isobn:bias_correction=false"}


@dataclass(frozen=True)
class Method:
    """One part of a spec: a method name and the parameters that differ from its defaults."""

    name: str
    args: tuple[tuple[str, Any], ...] = ()  # sorted by name

    @property
    def definition(self) -> MethodDef:
        return METHODS[self.name]

    @property
    def kwargs(self) -> dict[str, Any]:
        """Constructor keyword arguments: the parameters given, defaults left to the module."""
        return dict(self.args)

    def build(self, num_features: int) -> nn.Module:
        """The module of this method for embeddings of size num_features (D)."""
        factory = self.definition.factory
        return nn.Identity() if factory is None else factory(num_features, **self.kwargs)

    def __str__(self) -> str:
        if not self.args:
            return self.name
        return self.name + ":" + ",".join(f"{k}={_format(v)}" for k, v in self.args)


@dataclass(frozen=True)
class MethodSpec:
    """A parsed spec: at most one norm, then regularisers; `str()` is the canonical form."""

    parts: tuple[Method, ...]

    @property
    def norm(self) -> Method:
        """The norm part; `none` when the spec names only regularisers."""
        norms = [part for part in self.parts if part.definition.role == "norm"]
        return norms[0] if norms else Method("none")

    @property
    def regularisers(self) -> list[Method]:
        return [part for part in self.parts if part.definition.role == "regulariser"]

    @property
    def transform(self) -> str:
        """The map from the pooled embedding to the classifier input: the norm part's canonical
        spec, or "identity" without a norm (`none`; regularisers act only through training)."""
        return "identity" if self.norm.name == "none" else str(self.norm)

    def __str__(self) -> str:
        return "+".join(str(part) for part in self.parts)


def parse_method(text: str, option: str = "--method") -> MethodSpec:
    """Parse and check a spec; bad input raises a one-line UserError naming what is allowed."""
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"{option} is empty: give a method, e.g. {_choices()}")
    parts = [_parse_part(part, option) for part in text.split("+")]
    norms = [part for part in parts if part.definition.role == "norm"]
    if len(norms) > 1:
        raise UserError(
            f"{option} {text!r} combines two norms ({norms[0].name}, {norms[1].name}); "
            "give at most one norm, then regularisers"
        )
    if norms and parts[0] is not norms[0]:
        raise UserError(f"{option} {text!r}: write the norm first, then regularisers")
    names = [part.name for part in parts]
    if len(set(names)) != len(names):
        raise UserError(f"{option} {text!r} names a method twice")
    if len(parts) > 1 and norms and norms[0].name == "none":
        parts = [part for part in parts if part.name != "none"]  # none+x is x
    return MethodSpec(tuple(parts))


def split_methods(text: str) -> list[str]:
    """A comma-separated list of specs, split only at the commas that start a new method:
    a comma before `key=value` separates parameters of the same method, so
    ``none,istar:weight=-5,zeta=0.2`` is ``["none", "istar:weight=-5,zeta=0.2"]``."""
    items: list[str] = []
    for piece in text.split(","):
        if items and _PARAMETER.match(piece):
            items[-1] += "," + piece
        else:
            items.append(piece)
    return [item.strip() for item in items if item.strip()]


# `key=value` with no method name before it (a method name holds no '=', its parameters
# follow a ':')
_PARAMETER = re.compile(r"\s*[A-Za-z_]\w*\s*=")


def canonical(text: str, option: str = "--method") -> str:
    """The canonical spelling of a spec, e.g. 'isobn-legacy' -> 'isobn:bias_correction=false'."""
    return str(parse_method(text, option))


def _parse_part(text: str, option: str) -> Method:
    text = text.strip()
    text = ALIASES.get(text, text)
    name, _, arg_text = text.partition(":")
    name = name.strip()
    if name not in METHODS:
        raise UserError(f"unknown method {name!r} in {option}: choose from {_choices()}")
    definition = METHODS[name]
    defaults = definition.defaults()
    args: dict[str, Any] = {}
    for item in (a.strip() for a in arg_text.split(",") if a.strip()):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep:
            raise UserError(f"{option}: write {name} parameters as key=value, got {item!r}")
        if key not in definition.params:
            allowed = ", ".join(sorted(definition.params)) or "none"
            raise UserError(
                f"unknown parameter {key!r} of {name} in {option}; allowed parameters: {allowed}"
            )
        if key in args:
            raise UserError(f"{option}: parameter {key!r} of {name} is given twice")
        args[key] = _parse_value(name, key, raw.strip(), definition.params[key], option)
    if ":" in text and not args:
        raise UserError(f"{option}: no parameters after '{name}:'; drop the colon or add key=value")
    kept = tuple(sorted((k, v) for k, v in args.items() if not _same(v, defaults.get(k, _MISSING))))
    return Method(name, kept)


_MISSING = object()


def _same(value: Any, default: Any) -> bool:
    """Equal to the default (True is not 1 here: a bool parameter never equals a number)."""
    if default is _MISSING:
        return False
    return value == default and isinstance(value, bool) == isinstance(default, bool)


def _parse_value(name: str, key: str, raw: str, param: Param, option: str) -> Any:
    where = f"{option} {name}:{key}"
    if param.allow_none and raw.lower() == "none":
        return None
    if param.kind is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise UserError(f"{where} must be true or false, got {raw!r}")
    try:
        value = param.kind(raw)
    except ValueError:
        kind = "an integer" if param.kind is int else "a number"
        raise UserError(f"{where} must be {kind}, got {raw!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{where} must be a finite number, got {raw}")
    if not param.check(value):
        raise UserError(f"{where} must be {param.rule}, got {raw}")
    return value


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "none"
    return repr(value) if isinstance(value, float) else str(value)


def _choices() -> str:
    aliases = ", ".join(ALIASES)
    return f"{', '.join(METHODS)} (aliases: {aliases})"
