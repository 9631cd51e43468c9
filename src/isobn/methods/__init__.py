"""Ways to treat the pooled embedding beside IsoBN, and the one spec string that names them."""

from isobn.methods.correg import CorReg
from isobn.methods.istar import IStar
from isobn.methods.spec import (
    METHODS,
    Method,
    MethodSpec,
    canonical,
    parse_method,
    split_methods,
)
from isobn.methods.whitening import Whitening

__all__ = [
    "METHODS",
    "CorReg",
    "IStar",
    "Method",
    "MethodSpec",
    "Whitening",
    "canonical",
    "parse_method",
    "split_methods",
]
