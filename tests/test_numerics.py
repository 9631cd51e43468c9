"""Numerics: IsoBN and isotropy.report stay finite for any finite input (tiny to huge scales,
constant and duplicated columns, half precision), and MiniLM with --pooling cls (a dead [CLS]
dimension) trains without a NaN loss."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from isobn import IsoBN
from isobn.cli.main import main
from isobn.isotropy import report

DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def embeddings(draw, min_rows: int = 1) -> torch.Tensor:
    """(N, D) rows at a random scale in [1e-6, 1e6] (per column too), offset, with constant and
    duplicated columns, in float32/64, float16 or bfloat16."""
    rows, dims = draw(st.integers(min_rows, 16)), draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = 10.0 ** draw(st.floats(-6, 6))
    offset = draw(st.sampled_from([0.0, 1.0, -1.0])) * 10.0 ** draw(st.floats(-6, 6))
    x = rng.standard_normal((rows, dims)) * scale + offset
    if draw(st.booleans()):  # columns of very different scales
        x *= 10.0 ** rng.uniform(-6, 6, size=dims)
    if draw(st.booleans()):
        x[:, draw(st.integers(0, dims - 1))] = offset  # a constant column
    if dims > 1 and draw(st.booleans()):
        i, j = rng.choice(dims, size=2, replace=False)
        x[:, j] = x[:, i]  # a duplicated column (correlation exactly 1)
    return torch.from_numpy(x).to(draw(st.sampled_from(DTYPES)))


def assert_finite_output(out: torch.Tensor, x: torch.Tensor, scale: torch.Tensor) -> None:
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(scale).all() and (scale >= 0).all(), scale
    exact = (x.double() * scale.double()).abs().max()
    if exact < torch.finfo(x.dtype).max / 2:  # the true output fits the input's dtype
        assert torch.isfinite(out).all(), (x, scale, out)


@PROPERTY
@given(
    x=embeddings(),
    bias_correction=st.booleans(),
    use_correlation=st.booleans(),
    momentum=st.sampled_from([0.05, 0.5, 1.0, None]),
    beta=st.sampled_from([0.0, 0.5, 1.0]),
    three_d=st.booleans(),
)
def test_isobn_is_finite_in_train_and_eval_mode(
    x, bias_correction, use_correlation, momentum, beta, three_d
):
    assume(torch.isfinite(x).all())  # float16 overflows above 65504
    if three_d:  # (B, T, D): statistics over all leading dimensions
        x = x.unsqueeze(0)
    layer = IsoBN(
        x.shape[-1],
        momentum=momentum,
        beta=beta,
        bias_correction=bias_correction,
        use_correlation=use_correlation,
    )
    layer.eval()
    assert torch.equal(layer(x), x)  # no statistics yet: the identity
    layer.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a batch of one row leaves the statistics unchanged
        for _ in range(3):
            assert_finite_output(layer(x), x, layer.scale())
    for buffer in (layer.running_std, layer.running_cov):
        assert buffer.dtype == torch.float32 and torch.isfinite(buffer).all()
    layer.eval()
    assert_finite_output(layer(x), x, layer.scale())


@PROPERTY
@given(x=embeddings(min_rows=2), as_numpy=st.booleans())
def test_isotropy_report_is_finite(x, as_numpy):
    assume(torch.isfinite(x).all())
    if as_numpy and x.dtype in (torch.float32, torch.float64):
        x = x.numpy()
    values = report(x)
    assert values["n"] == x.shape[0] and values["d"] == x.shape[1]
    for name, value in values.items():
        assert isinstance(value, float) and math.isfinite(value), (name, value)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_with_a_tiny_std_dimension(dtype):
    # next to a dimension with std ~600, a constant one gets a scale ~1e6, beyond the float16
    # range (inf, and 0 * inf = nan), while x * scale is ~1e3
    x = torch.stack([torch.linspace(-1000, 1000, 8), torch.full((8,), 1e-3)], dim=1).to(dtype)
    layer = IsoBN(2, beta=1.0)
    out = layer(x)
    assert layer.scale()[1] > torch.finfo(torch.float16).max
    assert torch.isfinite(out).all() and out.dtype == dtype


@pytest.mark.slow
def test_minilm_cls_pooling_never_gives_a_nan_loss(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "train", "--model", "minilm", "--pooling", "cls", "--method", "isobn",
        "--task", "mr", "--max-train", "64", "--max-eval", "32", "--epochs", "1",
        "--max-length", "32", "--batch-size", "16", "--log-every-steps", "1",
        "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [entry["loss"] for entry in log if "loss" in entry]
    assert len(losses) == 4 and all(math.isfinite(loss) for loss in losses), losses
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(math.isfinite(v) for v in [*metrics["dev"].values(), *metrics["test"].values()])
    after = [entry["isotropy"]["after_norm"] for entry in log if "isotropy" in entry]
    assert after and all(math.isfinite(v) for v in after[-1].values())
