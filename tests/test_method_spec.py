"""Method specs: parsing, canonical names, defaults from the constructors, one-line errors."""

import inspect

import pytest

from isobn import IsoBN
from isobn.errors import UserError
from isobn.methods import canonical, parse_method


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("none", "none"),
        ("isobn", "isobn"),
        (" isobn ", "isobn"),
        ("isobn:beta=0.5", "isobn"),  # the default is dropped
        ("isobn:beta=0.25", "isobn:beta=0.25"),
        ("isobn:use_correlation=false,beta=1", "isobn:beta=1.0,use_correlation=false"),
        ("isobn-legacy", "isobn:bias_correction=false"),
        ("isobn:bias_correction=0", "isobn:bias_correction=false"),
        ("isobn:momentum=none", "isobn:momentum=none"),
        ("batchnorm", "batchnorm"),
        ("layernorm:eps=1e-06", "layernorm:eps=1e-06"),
    ],
)
def test_canonical_names(text, expected):
    assert canonical(text) == expected


def test_defaults_come_from_the_layer_signature():
    signature = inspect.signature(IsoBN.__init__)
    spec = parse_method(f"isobn:beta={signature.parameters['beta'].default}")
    assert spec.norm.kwargs == {}
    spec = parse_method("isobn:beta=0.25,bias_correction=false")
    assert spec.norm.kwargs == {"beta": 0.25, "bias_correction": False}
    layer = IsoBN(8, **spec.norm.kwargs)
    assert layer.beta == 0.25 and layer.bias_correction is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope", "unknown method 'nope' in --method: choose from none, isobn"),
        (
            "isobn:gamma=1",
            "unknown parameter 'gamma' of isobn in --method; allowed parameters: "
            "beta, bias_correction, eps, momentum, use_correlation",
        ),
        ("isobn:beta=-1", "--method isobn:beta must be >= 0, got -1"),
        ("isobn:beta=abc", "--method isobn:beta must be a number, got 'abc'"),
        ("isobn:beta=inf", "--method isobn:beta must be a finite number, got inf"),
        ("isobn:momentum=0", "--method isobn:momentum must be in (0, 1] or none, got 0"),
        ("isobn:bias_correction=maybe", "must be true or false, got 'maybe'"),
        ("isobn:beta", "write isobn parameters as key=value"),
        ("isobn:beta=1,beta=2", "parameter 'beta' of isobn is given twice"),
        ("isobn:", "no parameters after 'isobn:'"),
        ("none:beta=1", "unknown parameter 'beta' of none in --method; allowed parameters: none"),
        ("isobn+layernorm", "combines two norms (isobn, layernorm)"),
        ("", "--method is empty"),
    ],
)
def test_bad_specs_give_one_line(text, message):
    with pytest.raises(UserError) as error:
        parse_method(text)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_option_name_appears_in_errors():
    with pytest.raises(UserError, match="in --methods"):
        parse_method("nope", option="--methods")


def test_spec_parts():
    spec = parse_method("layernorm")
    assert spec.norm.name == "layernorm" and spec.regularisers == []
    assert str(parse_method("none")) == "none"


def test_build_makes_the_module():
    from torch import nn

    assert isinstance(parse_method("none").norm.build(8), nn.Identity)
    layer = parse_method("isobn:beta=0.25").norm.build(8)
    assert isinstance(layer, IsoBN) and layer.beta == 0.25 and layer.num_features == 8
    assert isinstance(parse_method("batchnorm:momentum=0.2").norm.build(8), nn.BatchNorm1d)
    assert parse_method("layernorm:eps=1e-06").norm.build(8).eps == 1e-6
