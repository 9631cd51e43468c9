"""IsoBN refuses what it cannot normalise, and a batch it cannot use leaves no trace."""

import math
import warnings

import pytest
import torch
from test_layer import correlated_batch

from isobn import IsoBN
from isobn.errors import UserError
from isobn.methods.spec import parse_method

NOT_FINITE = [math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("dtype", [torch.long, torch.int32, torch.bool, torch.complex64])
def test_non_floating_input_is_refused(dtype):
    layer = IsoBN(4).train()
    x = torch.ones(8, 4).to(dtype)
    with pytest.raises(TypeError, match="needs floating-point input"):
        layer(x)
    with pytest.raises(TypeError, match="needs floating-point input"):
        layer.eval()(x)
    assert layer.num_batches_tracked.item() == 0


@pytest.mark.parametrize("name", ["beta", "eps", "momentum"])
@pytest.mark.parametrize("value", NOT_FINITE)
def test_non_finite_hyperparameters_are_refused(name, value):
    with pytest.raises(ValueError, match=name):
        IsoBN(4, **{name: value})


@pytest.mark.parametrize("name", ["beta", "eps", "momentum"])
@pytest.mark.parametrize("raw", ["nan", "inf", "-inf"])
def test_non_finite_hyperparameters_are_refused_in_the_method_spec(name, raw):
    with pytest.raises(UserError, match=f"isobn:{name}") as caught:
        parse_method(f"isobn:{name}={raw}")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["beta", "eps"])
def test_non_finite_hyperparameters_are_refused_by_attach(name):
    from transformers import BertConfig, BertForSequenceClassification

    from isobn import attach

    config = BertConfig(
        vocab_size=50,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
    )
    model = BertForSequenceClassification(config)
    with pytest.raises(ValueError, match=name):
        attach(model, **{name: math.nan})
    with pytest.raises(ValueError, match=name):
        attach(model, method=f"isobn:{name}=nan")


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_batch_is_skipped_and_reported_once(bad):
    g = torch.Generator().manual_seed(0)
    layer = IsoBN(8).train()
    layer(correlated_batch(g))
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    x = correlated_batch(g)
    x[3, 2] = bad
    out = layer(x)
    for name, value in layer.state_dict().items():
        assert torch.equal(value, before[name]), name
    finite_rows = torch.ones(32, dtype=torch.bool)
    finite_rows[3] = False
    assert torch.isfinite(out[finite_rows]).all()  # the old estimates' scale
    layer(correlated_batch(g))
    assert layer.num_batches_tracked.item() == 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layer.eval()
        layer.train().eval()
    messages = [str(w.message) for w in caught]
    assert messages == [
        "IsoBN skipped the statistics of 1 of 3 training batches that held NaN or inf; its "
        "running estimates are those of the others"
    ]
    assert torch.isfinite(layer.scale()).all()


@pytest.mark.parametrize("momentum", [None, 0.05])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_skipped_first_batch_leaves_the_estimates_untouched(momentum, dtype):
    """Skipped at t = 0, where the cumulative average's weight 1 / t would be infinite: the
    estimates stay exactly 0 (before, momentum None made them NaN for good), and the next
    batch is folded in as the first one."""
    g = torch.Generator().manual_seed(3)
    layer = IsoBN(8, momentum=momentum, dtype=dtype).train()
    x = correlated_batch(g)
    x[0, 0] = math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layer(x)
    assert layer.num_batches_tracked.item() == 0
    assert not layer.running_std.any() and not layer.running_cov.any()
    first = correlated_batch(g)
    layer(first)
    fresh = IsoBN(8, momentum=momentum, dtype=dtype).train()
    fresh(first)
    torch.testing.assert_close(layer.running_cov, fresh.running_cov, rtol=0, atol=0)
    torch.testing.assert_close(layer.running_std, fresh.running_std, rtol=0, atol=0)


def test_finite_batches_give_no_warning():
    layer = IsoBN(8).train()
    layer(correlated_batch(torch.Generator().manual_seed(1)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer.eval()


def test_statistics_without_their_count_are_loaded_as_tracked():
    g = torch.Generator().manual_seed(2)
    trained = IsoBN(8).train()
    for _ in range(40):  # enough batches for the bias correction to be ~1
        trained(correlated_batch(g))
    state = trained.state_dict()
    del state["num_batches_tracked"]
    restored = IsoBN(8)
    restored.load_state_dict(state)
    x = correlated_batch(g)
    assert restored.num_batches_tracked.item() > 0
    assert not torch.equal(restored.eval()(x), x)
    torch.testing.assert_close(restored(x), trained.eval()(x), rtol=2e-2, atol=1e-3)
    empty = IsoBN(8)
    empty.load_state_dict({k: torch.zeros_like(v) for k, v in state.items()})
    assert empty.num_batches_tracked.item() == 0


def test_meta_device_works_shape_only():
    layer = IsoBN(8, device="meta").train()
    x = torch.empty(4, 3, 8, device="meta")
    out = layer(x)
    assert out.shape == x.shape and out.device.type == "meta"
    layer.eval()
    assert layer(x).shape == x.shape


def test_input_on_another_device_is_refused_with_the_fix():
    layer = IsoBN(8).train()
    with pytest.raises(ValueError, match=r"statistics are on cpu but the input is on meta"):
        layer(torch.empty(4, 8, device="meta"))
