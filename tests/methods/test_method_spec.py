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
        ("whitening", "whitening"),
        ("whitening:update_every=1", "whitening"),
        (
            "whitening:update_every=4,backprop=true",
            "whitening:backprop=true,update_every=4",
        ),
        ("whitening:momentum=none,eps=0.01", "whitening:eps=0.01,momentum=none"),
        ("whitening:solver=auto,iterations=20", "whitening"),
        ("whitening:solver=eigh", "whitening:solver=eigh"),
        ("whitening:solver=newton,iterations=30", "whitening:iterations=30,solver=newton"),
        ("correg:weight=0.04", "correg"),
        ("correg:weight=0.06", "correg:weight=0.06"),
        ("istar:weight=-5,zeta=0.2", "istar"),
        ("istar:weight=5,zeta=0", "istar:weight=5.0,zeta=0.0"),
        ("isobn+correg:weight=0.04", "isobn+correg"),
        ("none+istar:weight=-1", "istar:weight=-1.0"),
        ("whitening+correg+istar", "whitening+correg+istar"),
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
        ("whitening:update_every=2.5", "--method whitening:update_every must be an integer"),
        ("whitening:update_every=0", "--method whitening:update_every must be >= 1, got 0"),
        ("whitening:backprop=2", "--method whitening:backprop must be true or false"),
        ("whitening:solver=svd", "--method whitening:solver must be one of auto, newton, eigh"),
        ("whitening:iterations=0", "--method whitening:iterations must be >= 1, got 0"),
        ("whitening+isobn", "combines two norms (whitening, isobn)"),
        ("correg:weight=-1", "--method correg:weight must be >= 0, got -1"),
        ("istar:zeta=1.5", "--method istar:zeta must be in [0, 1], got 1.5"),
        ("istar:weight=nan", "--method istar:weight must be a finite number"),
        (
            "istar:beta=1",
            "unknown parameter 'beta' of istar in --method; allowed parameters: weight",
        ),
        ("correg+isobn", "write the norm first, then regularisers"),
        ("correg+correg:weight=1", "names a method twice"),
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


def test_new_methods_build_with_their_parameters():
    from isobn.methods.correg import CorReg
    from isobn.methods.istar import IStar
    from isobn.methods.whitening import Whitening

    spec = parse_method("whitening:update_every=4,backprop=true,eps=0.01")
    layer = spec.norm.build(8)
    assert isinstance(layer, Whitening) and layer.num_features == 8
    assert layer.update_every == 4 and isinstance(layer.update_every, int)
    assert layer.backprop is True and layer.eps == 0.01
    spec = parse_method("isobn+correg:weight=0.06+istar:weight=-5,zeta=0.3")
    assert spec.norm.name == "isobn"
    built = [part.build(8) for part in spec.regularisers]
    assert isinstance(built[0], CorReg) and built[0].weight == 0.06
    assert isinstance(built[1], IStar) and built[1].weight == -5.0 and built[1].zeta == 0.3
    assert parse_method("correg").norm.name == "none"


@pytest.mark.parametrize("name", ["whitening", "correg", "istar"])
def test_new_methods_written_with_their_constructor_defaults_are_the_bare_name(name):
    from isobn.methods import METHODS

    definition = METHODS[name]
    signature = inspect.signature(definition.factory.__init__)
    written = ",".join(
        f"{key}={str(signature.parameters[key].default).lower()}" for key in definition.params
    )
    spec = parse_method(f"{name}:{written}")
    assert str(spec) == name
    assert all(part.kwargs == {} for part in spec.parts)
