"""Ways to treat the pooled embedding beside IsoBN, and the one spec string that names them."""

from isobn.methods.spec import ALIASES, METHODS, Method, MethodSpec, canonical, parse_method

__all__ = ["ALIASES", "METHODS", "Method", "MethodSpec", "canonical", "parse_method"]
