"""isobn.json_text: every JSON text isobn writes parses strictly (no bare NaN / Infinity), and
reads back with its undefined numbers told apart from missing ones."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isobn import json_text

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
KEYS = st.text(max_size=6).filter(lambda key: key not in json_text.MARKERS)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=20,
)


def expected(value):
    """What a round trip gives: every value as written, except a non-finite array element
    (or top-level number), which is None (an array has no missing elements to tell apart)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [expected(item) for item in value]
    if isinstance(value, dict):
        return {
            key: item if isinstance(item, float) else expected(item) for key, item in value.items()
        }
    return value


def same(a, b) -> bool:
    """Equality with NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_every_value_is_strict_json_and_reads_back(value):
    text = json_text.dumps(value)
    json_text.strict_loads(text)  # JavaScript, Go and serde read it too
    assert same(json_text.loads(text), expected(value))


def test_an_undefined_score_is_null_and_named_apart_from_a_missing_one():
    metrics = {"pearson": math.nan, "spearman": None, "loss": -math.inf, "f1": 0.5}
    text = json_text.dumps(metrics)
    assert json_text.strict_loads(text) == {
        "pearson": None,
        "spearman": None,
        "loss": None,
        "f1": 0.5,
        "undefined": ["pearson"],
        "infinite": {"loss": "-Infinity"},
    }
    back = json_text.loads(text)
    assert math.isnan(back["pearson"]) and back["spearman"] is None
    assert back["loss"] == -math.inf and back["f1"] == 0.5 and set(back) == set(metrics)


def test_files_of_earlier_versions_with_bare_nan_still_read():
    old = '{"dev": {"pearson": NaN, "accuracy": Infinity}, "best_epoch": 1}'
    back = json_text.loads(old)
    assert math.isnan(back["dev"]["pearson"]) and back["dev"]["accuracy"] == math.inf
    with pytest.raises(ValueError, match="bare NaN"):
        json_text.strict_loads(old)


def test_a_marker_that_names_no_nulls_is_data_and_left_alone():
    data = {"undefined": ["a"], "a": 1.0}
    assert json_text.loads(json.dumps(data)) == data
    assert json_text.loads('{"undefined": "yes"}') == {"undefined": "yes"}


def test_a_marker_key_beside_a_non_finite_number_is_refused_not_overwritten():
    with pytest.raises(ValueError, match="'undefined'"):
        json_text.dumps({"undefined": 3, "pearson": math.nan})


NAMED_VALUES = st.recursive(  # keys as in config files, so a place reads back unambiguously
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.from_regex(r"[a-z_]{1,5}", fullmatch=True), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(NAMED_VALUES)
def test_the_first_non_finite_number_is_found_where_it_is(value):
    """first_non_finite finds a number exactly when json.dumps would write a bare NaN or
    Infinity (transformers' writers cannot mark it), and its place leads to that number."""
    found = json_text.first_non_finite(value)
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        assert found is not None
    else:
        assert found is None
        return
    place, number = found
    item = value
    for step in filter(None, place.replace("[", ".[").split(".")):
        item = item[int(step[1:-1])] if step.startswith("[") else item[step]
    assert same(item, number) and not math.isfinite(number)


def test_a_non_finite_number_is_named_as_json_dumps_writes_it():
    config = {"hidden_dropout_prob": 0.1, "pooler": {"sizes": [1, math.inf]}}
    assert json_text.first_non_finite(config) == ("pooler.sizes[1]", math.inf)
    words = [json_text.word(x) for x in (math.nan, math.inf, -math.inf)]
    assert words == ["NaN", "Infinity", "-Infinity"]
    assert words == [json.dumps(x) for x in (math.nan, math.inf, -math.inf)]
