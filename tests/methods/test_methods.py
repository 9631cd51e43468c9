"""Whitening, Cor-Reg and I-STAR against independent re-derivations of their formulas."""

import copy
import math
import os
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from isobn import isotropy
from isobn.methods.correg import CorReg, correlation_penalty
from isobn.methods.istar import (
    IStar,
    isoscore_from_covariance,
    isoscore_from_eigenvalues,
    isoscore_star,
    shrunk_covariance,
)
from isobn.methods.whitening import Whitening, inverse_sqrt, inverse_sqrt_newton


def correlated(generator, b=32, d=6, dtype=torch.float32):
    mixing = torch.randn(d, d, generator=generator) * torch.linspace(0.2, 3.0, d)
    return (torch.randn(b, d, generator=generator) @ mixing + 0.5).to(dtype)


def random_orthogonal(d, generator):
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    return q


# ----------------------------------------------------------------------------------------------
# Whitening
# ----------------------------------------------------------------------------------------------


def scipy_inverse_sqrt(cov, eps):
    """(Sigma + eps I)^{-1/2} by scipy's Schur-based fractional power, not an eigh."""
    a = np.asarray(cov, dtype=np.float64) + eps * np.eye(cov.shape[0])
    return np.real(scipy.linalg.fractional_matrix_power(a, -0.5))


def test_inverse_sqrt_matches_an_independent_matrix_power():
    g = torch.Generator().manual_seed(0)
    x = correlated(g, b=40, d=6, dtype=torch.float64)
    cov = torch.cov(x.T, correction=0)
    w = inverse_sqrt(cov, 1e-3)
    np.testing.assert_allclose(w.numpy(), scipy_inverse_sqrt(cov.numpy(), 1e-3), rtol=1e-9)
    # the defining property: W (Sigma + eps I) W = I, W symmetric
    eye = w @ (cov + 1e-3 * torch.eye(6, dtype=torch.float64)) @ w
    torch.testing.assert_close(eye, torch.eye(6, dtype=torch.float64), rtol=0, atol=1e-10)
    torch.testing.assert_close(w, w.T, rtol=0, atol=1e-12)


def test_inverse_sqrt_gradient_matches_finite_differences_with_repeated_eigenvalues():
    g = torch.Generator().manual_seed(1)
    q = random_orthogonal(5, g)
    cov = q @ torch.diag(torch.tensor([0.5, 0.5, 0.5, 2.0, 3.0], dtype=torch.float64)) @ q.T
    # eigh reads one triangle: differentiate through the symmetrised input
    assert torch.autograd.gradcheck(
        lambda a: inverse_sqrt(0.5 * (a + a.T), 1e-2), (cov.clone().requires_grad_(),)
    )


def test_inverse_sqrt_gradient_matches_autograd_through_eigh():
    g = torch.Generator().manual_seed(2)
    x = correlated(g, b=30, d=5, dtype=torch.float64)
    cov = torch.cov(x.T).requires_grad_()
    upstream = torch.randn(5, 5, generator=g, dtype=torch.float64)
    (inverse_sqrt(cov, 1e-3) * upstream).sum().backward()
    ours = cov.grad.clone()
    cov.grad = None
    lam, u = torch.linalg.eigh(cov)  # distinct eigenvalues: autograd through eigh is fine
    ((u @ torch.diag((lam + 1e-3) ** -0.5) @ u.T) * upstream).sum().backward()
    torch.testing.assert_close(ours, cov.grad, rtol=1e-8, atol=1e-10)


def test_inverse_sqrt_gradient_is_finite_for_a_rank_deficient_covariance():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 8, generator=g, dtype=torch.float64)  # rank 2, six zero eigenvalues
    x.requires_grad_()
    cov = torch.cov(x.T, correction=0)
    inverse_sqrt(cov, 1e-3).square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def reference_whitening_run(batches, m, eps, bias_correction=True):
    """Running estimates as normalised weighted averages, then (x - mu)(Sigma + eps I)^{-1/2}."""
    means, covs = [], []
    outputs = []
    for t, x in enumerate(batches, start=1):
        a = x.double().numpy()
        means.append(a.mean(0))
        covs.append(np.cov(a.T, bias=True))
        raw_weights = np.array([m * (1 - m) ** (t - s) for s in range(1, t + 1)])
        weights = raw_weights / raw_weights.sum() if bias_correction else raw_weights
        mean = sum(w * v for w, v in zip(weights, means))
        cov = sum(w * v for w, v in zip(weights, covs))
        outputs.append((a - mean) @ scipy_inverse_sqrt(cov, eps))
    return outputs, mean, cov


@pytest.mark.parametrize("dims, scale", [(6, 1.0), (40, 0.3), (40, 1e-2)])
def test_newton_schulz_inverse_sqrt_matches_an_independent_matrix_power(dims, scale):
    """20 steps converge to round-off while ||Sigma + eps I||_F / eps <= 3e5: full-rank and
    rank-deficient (B = 24 < D = 40) covariances, the ratio from ~1e2 to ~1e5."""
    g = torch.Generator().manual_seed(1)
    x = correlated(g, b=24, d=dims, dtype=torch.float64) * scale
    cov = torch.cov(x.T, correction=0)
    ratio = torch.linalg.matrix_norm(cov + 1e-3 * torch.eye(dims, dtype=torch.float64)) / 1e-3
    assert 1e2 < ratio < 3e5
    expected = scipy_inverse_sqrt(cov.numpy(), 1e-3)
    w = inverse_sqrt_newton(cov, 1e-3)
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())
    torch.testing.assert_close(w, inverse_sqrt(cov, 1e-3), rtol=1e-9, atol=1e-9)


def test_newton_schulz_beyond_its_range_is_a_softer_whitening():
    """||Sigma + eps I||_F / eps = 1.5e9: directions above ~1e-6 of the norm still get exactly
    (lambda + eps)^{-1/2}; weaker ones less (as if eps were ~1e-7 of the norm), never more,
    and nothing overflows. Too few steps give the same kind of map."""
    g = torch.Generator().manual_seed(1)
    cov = torch.cov((correlated(g, b=24, d=40, dtype=torch.float64) * 30.0).T, correction=0)
    eigenvalues, vectors = torch.linalg.eigh(cov)
    exact_gain = (eigenvalues.clamp_min(0) + 1e-3).rsqrt()  # (D,)
    strong = eigenvalues > 1e-6 * torch.linalg.matrix_norm(cov)
    for steps in (20, 3):
        gain = (vectors.T @ inverse_sqrt_newton(cov, 1e-3, steps) @ vectors).diagonal()
        assert torch.isfinite(gain).all() and (gain <= exact_gain * (1 + 1e-9)).all()
        if steps == 20:
            torch.testing.assert_close(gain[strong], exact_gain[strong], rtol=1e-8, atol=0)
            assert (gain[~strong] < 0.5 * exact_gain[~strong]).all()


@pytest.mark.parametrize("backprop", [False, True])
def test_whitening_solvers_agree_through_training(backprop):
    g = torch.Generator().manual_seed(2)
    batches = [correlated(g, b=8, d=12, dtype=torch.float64) for _ in range(4)]
    layers = {
        solver: Whitening(12, backprop=backprop, solver=solver, dtype=torch.float64).train()
        for solver in ("newton", "eigh")
    }
    outputs, grads = {}, {}
    for solver, layer in layers.items():
        xs = [x.clone().requires_grad_() for x in batches]
        outputs[solver] = [layer(x) for x in xs]
        sum(out.square().sum() for out in outputs[solver]).backward()
        grads[solver] = [x.grad for x in xs]
    for a, b in zip(outputs["newton"], outputs["eigh"]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    for a, b in zip(grads["newton"], grads["eigh"]):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)
    for key, value in layers["eigh"].state_dict().items():
        torch.testing.assert_close(layers["newton"].state_dict()[key], value, rtol=1e-9, atol=1e-9)


def test_whitening_solver_auto_is_eigh_on_the_cpu_and_newton_elsewhere():
    assert Whitening(4).resolved_solver() == "eigh"
    assert Whitening(4, device="meta").resolved_solver() == "newton"
    assert Whitening(4, solver="newton").resolved_solver() == "newton"
    assert Whitening(4, solver="eigh", device="meta").resolved_solver() == "eigh"


@pytest.mark.parametrize("bias_correction", [True, False])
def test_whitening_matches_the_re_derived_running_transform(bias_correction):
    g = torch.Generator().manual_seed(4)
    batches = [correlated(g) for _ in range(5)]
    layer = Whitening(6, momentum=0.2, eps=1e-3, bias_correction=bias_correction).train()
    outputs = [layer(x) for x in batches]
    expected, mean, cov = reference_whitening_run(batches, 0.2, 1e-3, bias_correction)
    for out, ref in zip(outputs, expected):
        np.testing.assert_allclose(out.double().numpy(), ref, rtol=1e-4, atol=1e-4)
    est_mean, est_cov = layer.estimates()
    np.testing.assert_allclose(est_mean.numpy(), mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(est_cov.numpy(), cov, rtol=1e-6, atol=1e-6)


def test_whitened_batch_has_identity_covariance():
    """momentum 1 uses this batch's statistics only: the batch comes out white."""
    g = torch.Generator().manual_seed(5)
    x = correlated(g, b=400, d=6, dtype=torch.float64)
    layer = Whitening(6, momentum=1.0, eps=1e-12, dtype=torch.float64).train()
    out = layer(x)
    torch.testing.assert_close(out.mean(0), torch.zeros(6, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(
        torch.cov(out.T, correction=0), torch.eye(6, dtype=torch.float64), atol=1e-6, rtol=0
    )


def test_identity_before_statistics_and_eval_uses_running_estimates_only():
    g = torch.Generator().manual_seed(6)
    layer = Whitening(6).eval()
    x = correlated(g)
    assert torch.equal(layer(x), x)
    layer.train()
    for _ in range(3):
        layer(correlated(g))
    layer.eval()
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    a, b = correlated(g), correlated(g) * 10
    mean, _ = layer.estimates()
    for batch in (a, b):
        expected = (batch.double() - mean) @ layer.whitening_matrix.double()
        torch.testing.assert_close(layer(batch).double(), expected, rtol=1e-5, atol=1e-5)
    for key, value in layer.state_dict().items():
        assert torch.equal(value, state[key]), key
    layer.reset_running_stats()
    assert torch.equal(layer(a), a)


def test_dead_dimensions_and_rank_deficient_batches_give_finite_output():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(4, 10, generator=g)
    x[:, 3] = 2.5  # a dead dimension; and B = 4 < D = 10
    for backprop in (False, True):
        layer = Whitening(10, backprop=backprop).train()
        xs = x.clone().requires_grad_()
        out = layer(xs)
        out.square().sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(xs.grad).all()
        assert out[:, 3].abs().max() < 1e-6  # the dead dimension centres to 0
        layer.eval()
        assert torch.isfinite(layer(torch.randn(5, 10, generator=g) * 100)).all()
    constant = Whitening(10).train()
    torch.testing.assert_close(constant(torch.ones(6, 10)), torch.zeros(6, 10), atol=1e-6, rtol=0)


def test_transform_is_detached_by_default():
    g = torch.Generator().manual_seed(8)
    layer = Whitening(6).train()
    layer(correlated(g))
    x = correlated(g).requires_grad_()
    upstream = torch.randn(32, 6, generator=g)
    (layer(x) * upstream).sum().backward()
    # out = (x - mu) W with mu, W constants: d/dx = upstream W^T
    expected = upstream @ layer.whitening_matrix.T
    torch.testing.assert_close(x.grad, expected, rtol=1e-5, atol=1e-6)


def test_backprop_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(9)
    layer = Whitening(4, momentum=0.3, backprop=True, dtype=torch.float64).double().train()
    layer(correlated(g, b=12, d=4, dtype=torch.float64))
    x = correlated(g, b=8, d=4, dtype=torch.float64).requires_grad_()
    # every evaluation starts from the same state, as one training step does
    assert torch.autograd.gradcheck(lambda v: copy.deepcopy(layer)(v), (x,))
    detached = copy.deepcopy(layer)
    detached.backprop = False
    (copy.deepcopy(layer)(x)).sum().backward()
    through = x.grad.clone()
    x.grad = None
    detached(x).sum().backward()
    assert not torch.allclose(through, x.grad)


def test_update_every_recomputes_the_matrix_on_schedule_and_resumes_exactly():
    g = torch.Generator().manual_seed(10)
    batches = [correlated(g) for _ in range(8)]
    layer = Whitening(6, update_every=3).train()
    matrices, means = [], []
    for x in batches[:5]:
        layer(x)
        matrices.append(layer.whitening_matrix.clone())
        means.append(layer.running_mean.clone())
    # recomputed at steps 1 and 4 only; the mean follows every step
    assert torch.equal(matrices[0], matrices[1]) and torch.equal(matrices[1], matrices[2])
    assert not torch.equal(matrices[2], matrices[3]) and torch.equal(matrices[3], matrices[4])
    assert all(not torch.equal(a, b) for a, b in zip(means, means[1:]))
    resumed = Whitening(6, update_every=3)
    resumed.load_state_dict(copy.deepcopy(layer.state_dict()))
    resumed.train()
    for step, x in enumerate(batches[5:], start=6):
        assert torch.equal(resumed(x), layer(x))
        if step == 7:  # recomputed here, from the estimates of step 7
            assert not torch.equal(layer.whitening_matrix, matrices[4])
            np.testing.assert_allclose(
                layer.whitening_matrix.double().numpy(),
                scipy_inverse_sqrt(layer.estimates()[1].numpy(), layer.eps),
                rtol=1e-5,
                atol=1e-6,
            )
            matrices.append(layer.whitening_matrix.clone())
    assert torch.equal(layer.whitening_matrix, matrices[-1])  # step 8 kept it
    for key, value in layer.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


def test_cumulative_average_when_momentum_is_none():
    g = torch.Generator().manual_seed(11)
    batches = [correlated(g) for _ in range(4)]
    layer = Whitening(6, momentum=None).train()
    for x in batches:
        layer(x)
    mean, cov = layer.estimates()
    expected_mean = np.mean([x.double().numpy().mean(0) for x in batches], axis=0)
    expected_cov = np.mean([np.cov(x.double().numpy().T, bias=True) for x in batches], axis=0)
    np.testing.assert_allclose(mean.numpy(), expected_mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(cov.numpy(), expected_cov, rtol=1e-6, atol=1e-6)


def test_whitening_batch_of_one_leaves_statistics_and_warns_once():
    layer = Whitening(4).train()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = torch.randn(1, 4)
        out = layer(x)
        layer(torch.randn(1, 4))
    assert torch.equal(out, x)
    assert layer.num_batches_tracked.item() == 0
    assert sum("batch of one" in str(w.message) for w in caught) == 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_whitening_half_precision(dtype):
    g = torch.Generator().manual_seed(12)
    layer = Whitening(6).to(dtype).train()
    assert layer.running_cov.dtype == torch.float32
    assert layer.whitening_matrix.dtype == torch.float32
    out = layer((correlated(g) * 100).to(dtype))
    assert out.dtype == dtype and torch.isfinite(out).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(layer(correlated(g))).all()


def test_whitening_leading_dimensions_repr_and_validation():
    g = torch.Generator().manual_seed(13)
    x = torch.randn(4, 5, 6, generator=g)
    a, b = Whitening(6).train(), Whitening(6).train()
    torch.testing.assert_close(a(x), b(x.reshape(20, 6)).reshape(4, 5, 6))
    text = repr(Whitening(6, momentum=0.1, update_every=4, backprop=True))
    for part in ("momentum=0.1", "eps=0.001", "bias_correction=True", "backprop=True"):
        assert part in text
    assert "update_every=4" in text and "solver=auto" in text and "iterations=20" in text
    for bad in (
        {"momentum": 0.0},
        {"eps": 0.0},
        {"update_every": 0},
        {"update_every": 1.5},
        {"update_every": True},
        {"solver": "svd"},
        {"iterations": 0},
        {"iterations": 2.5},
    ):
        with pytest.raises(ValueError):
            Whitening(4, **bad)
    with pytest.raises(ValueError, match="last dimension"):
        Whitening(4)(torch.randn(3, 5))


def distributed_batches(steps=3, d=5):
    g = torch.Generator().manual_seed(14)
    mixing = torch.randn(d, d, generator=g)
    return [torch.randn(20, d, generator=g) @ mixing + 2.0 for _ in range(steps)]


def _whitening_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    layer = Whitening(5, backprop=True).train()
    outputs = []
    for batch in distributed_batches():
        shard = batch[:12] if rank == 0 else batch[12:]  # uneven shards
        outputs.append(layer(shard).detach())
    torch.save(
        {"state": layer.state_dict(), "out": torch.cat(outputs)},
        os.path.join(out_dir, f"rank{rank}.pt"),
    )
    dist.destroy_process_group()


def test_whitening_two_processes_match_single_process(tmp_path):
    mp.spawn(_whitening_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    single = Whitening(5, backprop=True).train()
    single_out = [single(batch).detach() for batch in distributed_batches()]
    for rank in range(2):
        saved = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for key, value in single.state_dict().items():
            torch.testing.assert_close(saved["state"][key], value, rtol=1e-5, atol=1e-6)
        rows = slice(0, 12) if rank == 0 else slice(12, 20)
        expected = torch.cat([out[rows] for out in single_out])
        torch.testing.assert_close(saved["out"], expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Cor-Reg
# ----------------------------------------------------------------------------------------------


def reference_correg(x, weight):
    """weight * ||corrcoef - I||_F over the non-constant columns, with numpy."""
    a = x.double().numpy()
    a = a[:, a.std(0) > 0]
    corr = np.corrcoef(a.T)
    return weight * np.linalg.norm(corr - np.eye(a.shape[1]), "fro")


def test_correg_matches_numpy_corrcoef():
    g = torch.Generator().manual_seed(20)
    for b, d in ((32, 6), (8, 20)):  # B > D and a rank-deficient B < D
        x = correlated(g, b=b, d=d)
        np.testing.assert_allclose(CorReg(d, 0.04)(x).item(), reference_correg(x, 0.04), rtol=1e-6)
        loss = correlation_penalty(x.double())
        np.testing.assert_allclose(loss.item(), reference_correg(x, 1.0), rtol=1e-12)


def test_correg_excludes_dead_dimensions_and_is_scale_free():
    g = torch.Generator().manual_seed(21)
    x = correlated(g, b=16, d=5, dtype=torch.float64)
    with_dead = torch.cat([x, torch.full((16, 1), 3.0, dtype=torch.float64)], dim=1)
    with_dead.requires_grad_()
    loss = CorReg(6)(with_dead)
    np.testing.assert_allclose(loss.item(), CorReg(5)(x).item(), rtol=1e-12)
    loss.backward()
    assert torch.isfinite(with_dead.grad).all() and with_dead.grad[:, 5].abs().max() == 0
    shifted = x * torch.linspace(0.1, 10.0, 5, dtype=torch.float64) - 7.0
    np.testing.assert_allclose(CorReg(5)(shifted).item(), CorReg(5)(x).item(), rtol=1e-10)


@pytest.mark.parametrize("rows, dims", [(4, 12), (16, 384), (33, 64), (64, 384)])
def test_correg_penalty_has_a_floor_below_the_dimension(rows, dims):
    """A batch of B rows has a correlation matrix of rank <= B - 1 with unit diagonal, so
    ||Corr - I||_F^2 = sum(lambda^2) - D >= D^2 / (B - 1) - D: at B <= D the penalty cannot
    reach 0 (97.2 at D = 384, B = 16, the offline study's shape, where independent noise
    lands within 2% of the floor)."""
    floor = math.sqrt(dims**2 / (rows - 1) - dims)
    x = torch.randn(rows, dims, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    penalty = correlation_penalty(x).item()
    assert penalty >= floor - 1e-9
    if (rows, dims) == (16, 384):
        assert penalty <= 1.02 * floor


def test_correg_edge_cases_are_zero():
    assert CorReg(4)(torch.randn(1, 4)).item() == 0.0
    assert CorReg(4)(torch.ones(8, 4)).item() == 0.0
    # the non-constant columns of a Hadamard matrix are centred and orthogonal: Corr = I
    h = torch.tensor([[1, 1, 1], [-1, 1, -1], [1, -1, -1], [-1, -1, 1]], dtype=torch.float64)
    h.requires_grad_()
    loss = CorReg(3)(h)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    assert torch.isfinite(h.grad).all()


def test_correg_gradient_matches_finite_differences_and_decorrelates():
    g = torch.Generator().manual_seed(22)
    x = correlated(g, b=10, d=4, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: CorReg(4, 0.5)(v), (x,))
    y = correlated(g, b=64, d=6).requires_grad_()
    module = CorReg(6, weight=1.0)
    before = module(y).item()
    optimizer = torch.optim.SGD([y], lr=20.0)
    for _ in range(30):
        optimizer.zero_grad()
        module(y).backward()
        optimizer.step()
    assert module(y).item() < 0.5 * before


def autograd_correg(x):
    """The penalty as plain differentiable torch (the formula before its backward was written
    out): centre, per-column std in the graph, drop dead columns, zero the diagonal."""
    y = x - x.mean(0)
    std = y.detach().square().mean(0).sqrt()
    y = y[:, std > isotropy.DEAD_RTOL * std.max()]
    z = y / y.square().mean(0).sqrt()
    corr = z.T @ z / z.shape[0]
    return torch.linalg.vector_norm(corr - torch.diag_embed(corr.diagonal()))


@pytest.mark.parametrize("rows, dims, dead", [(10, 4, False), (16, 40, True), (64, 12, True)])
def test_correg_gradient_equals_autograd_of_the_formula(rows, dims, dead):
    g = torch.Generator().manual_seed(23)
    x = correlated(g, b=rows, d=dims, dtype=torch.float64)
    if dead:
        x[:, 2] = 1.5
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    value = correlation_penalty(ours)
    value.backward()
    expected = autograd_correg(theirs)
    expected.backward()
    np.testing.assert_allclose(value.item(), expected.item(), rtol=1e-12)
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-9, atol=1e-12)
    if dead:
        assert ours.grad[:, 2].abs().max() == 0


def test_correg_validation():
    for weight in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="weight must be a finite number >= 0"):
            CorReg(4, weight=weight)
    with pytest.raises(ValueError, match="num_features must be >= 1"):
        CorReg(0)
    with pytest.raises(ValueError, match="expected"):
        CorReg(4)(torch.randn(3, 5))
    assert "weight=0.06" in repr(CorReg(4, 0.06))


# ----------------------------------------------------------------------------------------------
# I-STAR
# ----------------------------------------------------------------------------------------------


def reference_isoscore_star(x, reference, zeta):
    """IsoScore* by numpy: shrunk unbiased covariances, then isotropy.isoscore_from_eigvals."""
    a = x.double().numpy()
    cov = np.cov(a.T)
    if reference is not None:
        cov = (1 - zeta) * cov + zeta * np.cov(reference.double().numpy().T)
    return isotropy.isoscore_from_eigvals(isotropy.covariance_eigvals(cov))


def test_istar_without_reference_is_the_isoscore_of_the_batch():
    g = torch.Generator().manual_seed(30)
    for b, d in ((64, 6), (16, 40)):
        x = correlated(g, b=b, d=d)
        module = IStar(d, weight=-5.0, zeta=0.2)
        assert module.reference_count.item() == 0
        score = module.isoscore_star(x).item()
        np.testing.assert_allclose(score, isotropy.isoscore(x), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(module(x).item(), -5.0 * (1 - score), rtol=1e-6)


def test_istar_with_reference_matches_the_shrunk_covariance():
    g = torch.Generator().manual_seed(31)
    reference = correlated(g, b=300, d=12)
    module = IStar(12, weight=2.0, zeta=0.3, dtype=torch.float64)
    module.set_reference(reference)
    assert module.reference_count.item() == 300
    np.testing.assert_allclose(
        module.reference_cov.numpy(), np.cov(reference.double().numpy().T), rtol=1e-12
    )
    x = correlated(g, b=8, d=12)
    expected = reference_isoscore_star(x, reference, 0.3)
    np.testing.assert_allclose(module.isoscore_star(x).item(), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(module(x).item(), 2.0 * (1 - expected), rtol=1e-6)
    module.clear_reference()
    np.testing.assert_allclose(
        module.isoscore_star(x).item(), reference_isoscore_star(x, None, 0.3), rtol=1e-9
    )


@pytest.mark.parametrize("d", [16, 384])
def test_istar_agrees_with_the_isoscore_package(d):
    package = pytest.importorskip("IsoScore.IsoScore")
    g = torch.Generator().manual_seed(32)
    mixing = torch.randn(d, d, generator=g, dtype=torch.float64)
    reference = torch.randn(2 * d, d, generator=g, dtype=torch.float64) @ mixing
    x = torch.randn(32, d, generator=g, dtype=torch.float64) @ mixing + 1.0
    module = IStar(d, zeta=0.2, dtype=torch.float64)
    for c0, zeta in ((torch.zeros(d, d, dtype=torch.float64), 0.0), (None, 0.2)):
        if c0 is None:
            module.set_reference(reference)
            c0 = torch.cov(reference.T)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the package re-wraps its input with torch.tensor
            theirs = package.istar().IsoScore_star(x.clone(), c0, zeta, is_eval=True).item()
        assert abs(module.isoscore_star(x).item() - theirs) < 1e-6


def test_istar_sign_of_the_weight_sets_the_direction():
    g = torch.Generator().manual_seed(33)
    start = correlated(g, b=64, d=8)
    reference = correlated(g, b=256, d=8)
    for weight, direction in ((-5.0, -1), (5.0, 1)):
        x = start.clone().requires_grad_()
        module = IStar(8, weight=weight, zeta=0.2)
        module.set_reference(reference)
        before = module.isoscore_star(x).item()
        optimizer = torch.optim.SGD([x], lr=5.0)
        for _ in range(20):
            optimizer.zero_grad()
            module(x).backward()
            optimizer.step()
        after = module.isoscore_star(x).item()
        assert direction * (after - before) > 0.01, (weight, before, after)


def test_istar_gradient_matches_finite_differences_and_is_finite_when_rank_deficient():
    g = torch.Generator().manual_seed(34)
    x = correlated(g, b=12, d=4, dtype=torch.float64).requires_grad_()
    module = IStar(4, weight=1.0, zeta=0.2, dtype=torch.float64)
    module.set_reference(correlated(g, b=50, d=4, dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda v: module(v), (x,))
    wide = torch.randn(4, 30, generator=g).requires_grad_()  # 26 repeated zero eigenvalues
    IStar(30)(wide).backward()
    assert torch.isfinite(wide.grad).all() and wide.grad.abs().sum() > 0


def eigenvalue_isoscore_star(x, reference, zeta):
    """IsoScore* through torch's eigenvalues of the shrunk covariance, differentiable (the
    route before the closed form), centred in the graph."""
    y = x - x.mean(0)
    cov = y.T @ y / (x.shape[0] - 1)
    if reference is not None:
        cov = (1 - zeta) * cov + zeta * reference
    return isoscore_from_eigenvalues(torch.linalg.eigvalsh(cov))


@pytest.mark.parametrize("rows, dims, reference", [(40, 6, True), (40, 6, False), (8, 12, True)])
def test_istar_closed_form_equals_the_eigenvalue_route(rows, dims, reference):
    """Value to 1e-12; gradient too, where the eigenvalues are distinct (the eigenvalue route's
    gradient is undefined at repeated ones, e.g. the zeros of a rank-deficient batch)."""
    g = torch.Generator().manual_seed(35)
    x = correlated(g, b=rows, d=dims, dtype=torch.float64)
    c0 = torch.cov(correlated(g, b=200, d=dims, dtype=torch.float64).T)
    ref = c0 if reference else None
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    value = isoscore_star(ours, ref, 0.3)
    expected = eigenvalue_isoscore_star(theirs, ref, 0.3)
    assert abs(value.item() - expected.item()) <= 1e-12
    cov = shrunk_covariance(x, ref, 0.3)
    assert abs(isoscore_from_covariance(cov).item() - expected.item()) <= 1e-12
    if rows > dims or reference:  # distinct eigenvalues
        value.backward()
        expected.backward()
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-8, atol=1e-12)


def test_istar_zero_variance_has_a_zero_gradient():
    x = torch.ones(6, 4, requires_grad=True)
    loss = IStar(4, weight=-5.0)(x)
    loss.backward()
    assert loss.item() == pytest.approx(-5.0) and torch.equal(x.grad, torch.zeros(6, 4))


def test_istar_edge_cases_and_validation():
    assert IStar(4)(torch.randn(1, 4)).item() == 0.0
    assert isoscore_star(torch.ones(6, 4)).item() == 0.0  # no variance at all
    assert IStar(4, weight=-5.0)(torch.ones(6, 4)).item() == pytest.approx(-5.0)
    for bad in ({"zeta": -0.1}, {"zeta": 1.1}, {"weight": float("nan")}):
        with pytest.raises(ValueError):
            IStar(4, **bad)
    with pytest.raises(ValueError, match="at least 2 rows"):
        IStar(4).set_reference(torch.randn(1, 4))
    with pytest.raises(ValueError, match="expected"):
        IStar(4).set_reference(torch.randn(5, 3))
    assert "zeta=0.2" in repr(IStar(4))


# ----------------------------------------------------------------------------------------------
# The interface the trainer uses: state travels in state_dict
# ----------------------------------------------------------------------------------------------


class TinyClassifier(nn.Module):
    """Encoder stand-in + a norm + regularisers + head, shaped like isobn's model."""

    def __init__(self, d=6):
        super().__init__()
        self.encoder = nn.Linear(d, d)
        self.norm = Whitening(d, update_every=2)
        self.regularisers = nn.ModuleList([CorReg(d), IStar(d)])
        self.head = nn.Linear(d, 2)

    def step(self, x, y, optimizer):
        pooled = self.encoder(x)
        loss = nn.functional.cross_entropy(self.head(self.norm(pooled)), y)
        loss = loss + sum(reg(pooled) for reg in self.regularisers)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.detach()


def test_model_with_the_methods_round_trips_its_state_exactly(tmp_path):
    from safetensors.torch import load_file, save_file

    g = torch.Generator().manual_seed(40)
    data = [(correlated(g, b=16), torch.randint(0, 2, (16,), generator=g)) for _ in range(6)]
    torch.manual_seed(0)
    model = TinyClassifier().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.regularisers[1].set_reference(model.encoder(correlated(g, b=64)).detach())
    for x, y in data[:3]:
        model.step(x, y, optimizer)
    keys = set(model.state_dict())
    for name in ("running_mean", "running_cov", "whitening_matrix", "num_batches_tracked"):
        assert f"norm.{name}" in keys
    assert {"regularisers.1.reference_cov", "regularisers.1.reference_count"} <= keys
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "m.st")

    restored = TinyClassifier().train()
    restored.load_state_dict(load_file(tmp_path / "m.st"), strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key
    restored_optimizer = torch.optim.SGD(restored.parameters(), lr=0.1)
    for x, y in data[3:]:  # the next steps, including a cached-matrix step, agree bit for bit
        assert torch.equal(model.step(x, y, optimizer), restored.step(x, y, restored_optimizer))
    for key, value in model.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key


def test_regularisers_under_autocast_return_float32():
    g = torch.Generator().manual_seed(41)
    x = correlated(g, b=16, d=8).requires_grad_()
    reference = correlated(g, b=64, d=8)
    istar = IStar(8)
    istar.set_reference(reference)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled = x @ torch.eye(8)  # bfloat16 under autocast, as an encoder's output would be
        assert pooled.dtype == torch.bfloat16
        losses = [CorReg(8)(pooled), istar(pooled)]
    for loss in losses:
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
    sum(losses).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
