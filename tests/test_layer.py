"""IsoBN against an independent re-derivation of the released formula, in both bias modes."""

import warnings

import pytest
import torch

from isobn import IsoBN


def reference_step(x, std, cov, m):
    """One released update on (B, D) x, written out with plain loops over the formula."""
    x = x.double()
    y = x - x.mean(0, keepdim=True)
    batch_std = (y**2).mean(0).sqrt()
    batch_cov = y.T @ y / x.shape[0]
    return std + m * (batch_std - std), cov + m * (batch_cov - cov)


def reference_scale(std, cov, beta=0.5, eps=1e-3, use_correlation=True):
    d = std.shape[0]
    corr = torch.empty(d, d, dtype=torch.float64)
    for i in range(d):
        for j in range(d):
            corr[i, j] = min(max(cov[i, j] / (std[i] * std[j]), -1.0), 1.0)
    gamma = (corr**2).mean(1) if use_correlation else torch.ones(d, dtype=torch.float64)
    scale = (gamma * std + eps) ** (-beta)
    total = cov.diagonal().sum()
    return scale * (total / ((cov.diagonal() * scale**2).sum() + eps)).sqrt()


def correlated_batch(generator, b=32, d=8):
    mixing = torch.randn(d, d, generator=generator) * torch.linspace(0.2, 3.0, d)
    return torch.randn(b, d, generator=generator) @ mixing + 0.5


@pytest.mark.parametrize("use_correlation", [True, False])
def test_legacy_mode_matches_released_arithmetic(use_correlation):
    g = torch.Generator().manual_seed(0)
    layer = IsoBN(8, bias_correction=False, use_correlation=use_correlation).train()
    std = torch.zeros(8, dtype=torch.float64)
    cov = torch.zeros(8, 8, dtype=torch.float64)
    for _ in range(5):
        x = correlated_batch(g)
        out = layer(x)
        std, cov = reference_step(x, std, cov, 0.05)
        expected = x.double() * reference_scale(std, cov, use_correlation=use_correlation)
        torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-6)
    layer.eval()
    x = correlated_batch(g)
    torch.testing.assert_close(
        layer(x).double(),
        x.double() * reference_scale(std, cov, use_correlation=use_correlation),
        rtol=1e-5,
        atol=1e-6,
    )
    assert layer.num_batches_tracked.item() == 5


def test_bias_corrected_estimates_are_normalised_weighted_averages():
    g = torch.Generator().manual_seed(1)
    m = 0.05
    layer = IsoBN(8, momentum=m).train()
    batch_stds, batch_covs = [], []
    for t in range(1, 7):
        x = correlated_batch(g)
        out = layer(x)
        s, c = reference_step(
            x, torch.zeros(8, dtype=torch.float64), torch.zeros(8, 8, dtype=torch.float64), 1.0
        )
        batch_stds.append(s)
        batch_covs.append(c)
        weights = torch.tensor(
            [m * (1 - m) ** (t - k) for k in range(1, t + 1)], dtype=torch.float64
        )
        weights = weights / weights.sum()
        std = sum(w * s for w, s in zip(weights, batch_stds))
        cov = sum(w * c for w, c in zip(weights, batch_covs))
        torch.testing.assert_close(
            out.double(), x.double() * reference_scale(std, cov), rtol=1e-5, atol=1e-6
        )
    # After one step the bias-corrected estimates equal the first batch's own statistics.
    first = IsoBN(8).train()
    x = correlated_batch(g)
    first(x)
    s, c = reference_step(
        x, torch.zeros(8, dtype=torch.float64), torch.zeros(8, 8, dtype=torch.float64), 1.0
    )
    std, cov = first.estimates()
    torch.testing.assert_close(std.double(), s, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cov.double(), c, rtol=1e-5, atol=1e-6)


def test_bias_correction_keeps_correlations_off_the_clamp_early():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(64, 16, generator=g)  # nearly uncorrelated
    corrected, legacy = IsoBN(16).train(), IsoBN(16, bias_correction=False).train()
    corrected(x)
    legacy(x)

    def off_diagonal_abs_corr(layer):
        std, cov = layer.estimates()
        corr = (cov / torch.outer(std, std)).clamp(-1, 1)
        return corr[~torch.eye(16, dtype=torch.bool)].abs()

    assert off_diagonal_abs_corr(corrected).max() < 0.6
    # the released defect: after one step every correlation is inflated 1 / m = 20 times
    inflated = (off_diagonal_abs_corr(corrected) / 0.05).clamp(max=1.0)
    torch.testing.assert_close(off_diagonal_abs_corr(legacy), inflated, rtol=1e-4, atol=1e-5)
    assert (off_diagonal_abs_corr(legacy) > 0.999).float().mean() > 0.5


def test_cumulative_average_when_momentum_is_none():
    g = torch.Generator().manual_seed(3)
    layer = IsoBN(4, momentum=None).train()
    batches = [correlated_batch(g, d=4) for _ in range(3)]
    for x in batches:
        layer(x)
    zeros = torch.zeros(4, dtype=torch.float64), torch.zeros(4, 4, dtype=torch.float64)
    stats = [reference_step(x, *zeros, 1.0) for x in batches]
    torch.testing.assert_close(
        layer.running_std.double(), sum(s for s, _ in stats) / 3, rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(
        layer.running_cov.double(), sum(c for _, c in stats) / 3, rtol=1e-5, atol=1e-6
    )


def test_identity_before_statistics_and_for_beta_zero():
    x = torch.randn(5, 6)
    layer = IsoBN(6).eval()
    assert torch.equal(layer(x), x)
    beta0 = IsoBN(6, beta=0.0).train()
    assert torch.equal(beta0(x), x)
    beta0.eval()
    assert torch.equal(beta0(x), x)


def test_eval_uses_running_estimates_only():
    g = torch.Generator().manual_seed(4)
    layer = IsoBN(8).train()
    layer(correlated_batch(g))
    layer.eval()
    before = layer.state_dict()
    x = correlated_batch(g)
    out = layer(x)
    assert torch.equal(out, x * layer.scale().float())
    for key, value in layer.state_dict().items():
        assert torch.equal(value, before[key])


def test_gradient_is_the_detached_scale():
    g = torch.Generator().manual_seed(5)
    layer = IsoBN(8).train()
    x = correlated_batch(g).requires_grad_()
    layer(x).sum().backward()
    expected = layer.scale().float().expand_as(x)
    torch.testing.assert_close(x.grad, expected)


def test_scale_preserves_total_variance():
    g = torch.Generator().manual_seed(6)
    layer = IsoBN(8).train()
    layer(correlated_batch(g, b=256))
    std, cov = layer.estimates()
    scale = layer.scale()
    rescaled = (cov.diagonal() * scale**2).sum()
    torch.testing.assert_close(rescaled, cov.diagonal().sum(), rtol=1e-3, atol=1e-3)
    # the dimension with the largest, most shared variance is shrunk the most
    assert scale.argmin() == std.argmax() or scale.min() < scale.max()


def test_zero_variance_dimension_is_finite():
    x = torch.randn(32, 6)
    x[:, 2] = 3.0
    layer = IsoBN(6).train()
    out = layer(x)
    assert torch.isfinite(out).all()
    layer.eval()
    assert torch.isfinite(layer(x)).all()
    assert torch.isfinite(layer.scale()).all()


def test_all_constant_input_is_identity_scale():
    layer = IsoBN(4).train()
    x = torch.ones(8, 4)
    assert torch.equal(layer(x), x)


def test_batch_of_one_leaves_statistics_and_warns_once():
    layer = IsoBN(4).train()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = layer(torch.randn(1, 4))
        layer(torch.randn(1, 4))
    assert torch.isfinite(out).all()
    assert layer.num_batches_tracked.item() == 0
    assert sum("batch of one" in str(w.message) for w in caught) == 1


def test_leading_dimensions_are_flattened():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(4, 5, 8, generator=g)
    a, b = IsoBN(8).train(), IsoBN(8).train()
    out = a(x)
    flat = b(x.reshape(20, 8)).reshape(4, 5, 8)
    assert out.shape == x.shape
    torch.testing.assert_close(out, flat)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_and_module(dtype):
    g = torch.Generator().manual_seed(8)
    layer = IsoBN(8).to(dtype).train()
    assert layer.running_cov.dtype == torch.float32
    x = (correlated_batch(g) * 100).to(dtype)
    out = layer(x)
    assert out.dtype == dtype and torch.isfinite(out).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(correlated_batch(g))
    assert torch.isfinite(out).all()
    assert layer.running_cov.dtype == torch.float32


def test_buffers_round_trip_through_state_dict():
    g = torch.Generator().manual_seed(9)
    layer = IsoBN(8).train()
    for _ in range(3):
        layer(correlated_batch(g))
    restored = IsoBN(8)
    restored.load_state_dict(layer.state_dict())
    assert set(layer.state_dict()) == {"running_std", "running_cov", "num_batches_tracked"}
    x = correlated_batch(g)
    assert torch.equal(restored.eval()(x), layer.eval()(x))


def test_released_checkpoint_keys_are_migrated():
    g = torch.Generator().manual_seed(10)
    legacy = IsoBN(8, bias_correction=False).train()
    for _ in range(2):
        legacy(correlated_batch(g))
    released_state = {"cov": legacy.running_cov.clone(), "std": legacy.running_std.clone()}
    migrated = IsoBN(8)
    migrated.load_state_dict(released_state)
    x = correlated_batch(g)
    torch.testing.assert_close(migrated.eval()(x), legacy.eval()(x))


def test_reset_and_repr_and_validation():
    layer = IsoBN(4, momentum=0.1, beta=0.3).train()
    layer(torch.randn(8, 4))
    layer.reset_running_stats()
    assert layer.num_batches_tracked.item() == 0 and layer.running_cov.abs().sum() == 0
    text = repr(layer)
    for part in ("4", "momentum=0.1", "beta=0.3", "eps=0.001", "bias_correction=True"):
        assert part in text
    for bad in ({"momentum": 0.0}, {"momentum": 1.5}, {"beta": -1.0}, {"eps": 0.0}):
        with pytest.raises(ValueError):
            IsoBN(4, **bad)
    with pytest.raises(ValueError, match="last dimension"):
        layer(torch.randn(3, 5))
