"""JSON that every parser reads: no bare ``NaN`` or ``Infinity``, however undefined a score.

Python's json writes NaN and infinities as the bare words ``NaN`` / ``Infinity``, which are
not JSON: JavaScript, Go, serde and ``json.loads(..., parse_constant=...)`` refuse them. isobn
writes every JSON file through [`dumps`][isobn.json_text.dumps] and reads it back through
[`loads`][isobn.json_text.loads]:

- a number that is not finite is written ``null``;
- the object holding it names it, so that "undefined" stays apart from "missing" (a plain
  ``null``): a NaN (an undefined score, e.g. Pearson on constant targets) under
  ``"undefined"``, an infinity under ``"infinite"`` with its sign::

      {"pearson": null, "spearman": null, "undefined": ["pearson", "spearman"]}
      {"loss": null, "infinite": {"loss": "Infinity"}}

- an array element that is not finite is written ``null`` without a marker (an array has no
  missing elements);
- [`loads`][isobn.json_text.loads] gives the named keys their NaN / infinity back and drops
  the markers, so the reading code sees the values that were written; files of earlier isobn
  versions, with bare ``NaN``, still read.
"""

from __future__ import annotations

import json
import math
from typing import Any

UNDEFINED = "undefined"  # object key: the keys whose value is NaN (written null)
INFINITE = "infinite"  # object key: {key: "Infinity" | "-Infinity"} (written null)
MARKERS = (UNDEFINED, INFINITE)
_SIGNS = {"Infinity": math.inf, "-Infinity": -math.inf}


def dumps(value: Any, indent: int | None = None) -> str:
    """`value` as strict JSON text (see the module docstring); ValueError for a value JSON
    cannot hold, or for an object that already has a marker key beside a non-finite number."""
    return json.dumps(encodable(value), indent=indent, allow_nan=False)


def loads(text: str | bytes) -> Any:
    """The value of a JSON text written by `dumps` (or by an earlier isobn, with bare NaN):
    the keys named by the markers get their non-finite numbers back."""
    return decoded(json.loads(text))


def encodable(value: Any) -> Any:
    """`value` with every non-finite float replaced by None and named by its object's
    markers (see the module docstring); tuples become lists, other values are kept."""
    if isinstance(value, float) and not math.isfinite(value):
        return None  # an array element, or the top level: no object to hold a marker
    if isinstance(value, dict):
        return _encodable_object(value)
    if isinstance(value, list | tuple):
        return [encodable(item) for item in value]
    return value


def _encodable_object(value: dict) -> dict:
    result, undefined, infinite = {}, [], {}
    for key, item in value.items():
        if isinstance(item, float) and not math.isfinite(item):
            name = str(key)  # json.dumps writes a number key as its text
            if math.isnan(item):
                undefined.append(name)
            else:
                infinite[name] = "Infinity" if item > 0 else "-Infinity"
            result[key] = None
        else:
            result[key] = encodable(item)
    for marker, names in ((UNDEFINED, undefined), (INFINITE, infinite)):
        if not names:
            continue
        if marker in value:
            raise ValueError(
                f"cannot mark the non-finite numbers of an object that has a key {marker!r}"
            )
        result[marker] = names
    return result


def decoded(value: Any) -> Any:
    """`value` (parsed JSON) with the markers of every object turned back into NaN / infinity
    and removed; an object whose marker does not name null values is left as it is."""
    if isinstance(value, list):
        return [decoded(item) for item in value]
    if not isinstance(value, dict):
        return value
    result = {key: decoded(item) for key, item in value.items()}
    undefined, infinite = result.get(UNDEFINED), result.get(INFINITE)
    if _names_nulls(result, undefined) and isinstance(undefined, list):
        del result[UNDEFINED]
        for key in undefined:
            result[key] = math.nan
    if _names_nulls(result, infinite) and isinstance(infinite, dict):
        if all(sign in _SIGNS for sign in infinite.values()):
            del result[INFINITE]
            for key, sign in infinite.items():
                result[key] = _SIGNS[sign]
    return result


def _names_nulls(obj: dict, names: Any) -> bool:
    """Whether `names` (a list, or a dict's keys) are keys of `obj` whose values are null."""
    if not isinstance(names, list | dict) or not names:
        return False
    return all(isinstance(key, str) and key in obj and obj[key] is None for key in names)


def first_non_finite(value: Any, place: str = "") -> tuple[str, float] | None:
    """The first number of `value` (parsed JSON, or a dict / list about to be written) that
    is NaN or infinite, with its place (``pooler.eps``, ``sizes[2]``); None when every
    number is finite. For a writer that cannot mark it (transformers' config files)."""
    if isinstance(value, float) and not math.isfinite(value):
        return place, value
    if isinstance(value, dict):
        items = ((f"{place}.{key}" if place else str(key), item) for key, item in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{place}[{number}]", item) for number, item in enumerate(value))
    else:
        return None
    for where, item in items:
        found = first_non_finite(item, where)
        if found is not None:
            return found
    return None


def word(number: float) -> str:
    """How Python's json writes a non-finite number: NaN, Infinity or -Infinity."""
    if math.isnan(number):
        return "NaN"
    return "Infinity" if number > 0 else "-Infinity"


def strict_loads(text: str | bytes) -> Any:
    """json.loads that refuses bare NaN / Infinity, as parsers outside Python do: ValueError."""

    def refuse(word: str):
        raise ValueError(f"not JSON: bare {word}")

    return json.loads(text, parse_constant=refuse)


__all__ = [
    "INFINITE",
    "MARKERS",
    "UNDEFINED",
    "decoded",
    "dumps",
    "encodable",
    "first_non_finite",
    "loads",
    "strict_loads",
    "word",
]
