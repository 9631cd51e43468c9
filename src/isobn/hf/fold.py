"""Fold an eval-time transform into the linear layer that follows it: a plain model, same logits.

In eval mode each norm of isobn is a fixed affine map of the pooled vector x (B, D):

* IsoBN: y = x * s (s (D,), the scale of the running estimates);
* whitening: y = (x - mu) W (mu (D,), W (D, D) symmetric);
* BatchNorm1d: y = (x - mean) / sqrt(var + eps) * gamma + beta;
* the identity (no norm; the regularisers Cor-Reg and I-STAR only add a training loss).

Written as y = x M + c (M diagonal (D,) or full (D, D), c (D,)), a following linear layer
z = y Wᵀ + b becomes z = x W'ᵀ + b' with W' = W Mᵀ (W diag(s) for IsoBN) and b' = b + W c
(b - W' mu for whitening): exact up to rounding. The product is computed in float64 and stored
in the layer's dtype. LayerNorm normalises each example by its own statistics: not affine,
refused. So is a non-linear step between the transform and the linear layer.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from isobn.errors import UserError
from isobn.hf.adapters import follow_into_peft_models
from isobn.hf.attached import HANDLE_ATTR, attachment
from isobn.hf.inject import detach
from isobn.hf.sites import HEAD_NAMES, base_model, is_peft_model
from isobn.layer import IsoBN
from isobn.methods.whitening import Whitening


@dataclass(frozen=True)
class Affine:
    """y = x M + c of an eval-mode norm, float64: M (D,) (diagonal) or (D, D), c (D,) or None."""

    matrix: Tensor | None  # None: the identity
    offset: Tensor | None


class NotFoldable(UserError, ValueError):
    """The transform has no exact place in the following linear layer (one-line message)."""


def eval_affine(norm: nn.Module) -> Affine:
    """The affine map that `norm` computes in eval mode; NotFoldable for one that is not affine."""
    name = type(norm).__name__
    if isinstance(norm, nn.Identity):
        return Affine(None, None)
    if isinstance(norm, IsoBN):
        return Affine(norm.scale().detach().double(), None)
    if isinstance(norm, Whitening):
        mean, _ = norm.estimates()  # bias-corrected running mean, float64
        matrix = norm.whitening_matrix.detach().double()
        return Affine(matrix, -(mean.double() @ matrix))
    if isinstance(norm, nn.BatchNorm1d):
        if norm.running_mean is None:
            raise NotFoldable(
                f"{name} cannot be folded: it has no running statistics "
                "(track_running_stats=False), so eval mode normalises each batch by its own"
            )
        scale = (norm.running_var.double() + norm.eps).rsqrt()
        shift = -norm.running_mean.double() * scale
        if norm.affine:
            scale, shift = scale * norm.weight.double(), shift * norm.weight.double()
            shift = shift + norm.bias.double()
        return Affine(scale.detach(), shift.detach())
    if isinstance(norm, nn.LayerNorm):
        raise NotFoldable(
            f"{name} cannot be folded: it normalises each example by that example's own mean "
            "and variance, which no fixed weight matrix computes; serve the model with isobn"
        )
    raise NotFoldable(f"{name} cannot be folded: it is not a known eval-time affine transform")


@torch.no_grad()
def fold_into_linear(affine: Affine, linear: nn.Linear) -> None:
    """Make ``linear(x)`` compute ``linear(affine(x))``, in place: W' = W Mᵀ, b' = b + W c."""
    if affine.matrix is None and affine.offset is None:
        return
    weight = linear.weight.double()  # (C, D)
    bias = linear.bias.double() if linear.bias is not None else weight.new_zeros(weight.shape[0])
    if affine.offset is not None:
        bias = bias + weight @ affine.offset.to(weight.device)
    if affine.matrix is not None:
        matrix = affine.matrix.to(weight.device)
        weight = weight * matrix if matrix.dim() == 1 else weight @ matrix.T
    linear.weight.copy_(weight.to(linear.weight.dtype))
    if linear.bias is None:
        linear.bias = nn.Parameter(bias.to(linear.weight.dtype))
    else:
        linear.bias.copy_(bias.to(linear.bias.dtype))


# --- models with IsoBN attached (isobn.attach) -------------------------------------------------


def fold(model: nn.Module) -> nn.Module:
    """A plain transformers model with the eval-mode logits of `model`, IsoBN folded into the
    first linear layer of the head (`model` itself is left as it was).

    Args:
        model: a ``*ForSequenceClassification`` with IsoBN attached by
            [`isobn.attach`][isobn.hf.inject.attach] (or loaded by
            [`isobn.hf.from_pretrained`][isobn.hf.from_pretrained]), or a peft ``PeftModel`` of one
            (its adapter is merged first, ``merge_and_unload``). A model without IsoBN is
            returned as a copy.

    Returns:
        A copy of the model in eval mode with no isobn module, hook or ``config.isobn``: its
        ``save_pretrained`` directory loads with plain transformers.

    IsoBN's eval-mode scale s (D,) goes into the head's first linear layer, W' = W diag(s):
    ``classifier`` for BERT, ALBERT, DeBERTa-v2/v3 and ModernBERT, ``pre_classifier`` for
    DistilBERT, ``classifier.dense`` for the RoBERTa-style heads (RoBERTa, XLM-R, CamemBERT,
    MPNet, ELECTRA), and for other architectures the first linear layer that receives IsoBN's
    output unchanged (checked on a random input).

    Raises:
        NotFoldable (a UserError): a non-linear step between IsoBN and the head's first
            linear layer.
    """
    if is_peft_model(model):
        follow_into_peft_models()  # IsoBN on a wrapped head moves to the merged head
        model = copy.deepcopy(model).merge_and_unload()
    else:
        model = copy.deepcopy(model)
    model.eval()
    found = attachment(model)
    if found is None:
        return model
    site_path, site, norm = found
    name = type(base_model(model)).__name__
    hook = site._forward_pre_hooks[site.__dict__[HANDLE_ATTR].id]
    first_token = hook.keywords["first_token"]
    affine = eval_affine(norm)
    probe = _probe_input(model, norm.num_features, first_token)
    expected = _head(model, site_path)(probe)  # with IsoBN, eval mode
    detach(model)
    target = _first_linear(model, site_path, first_token, probe, name)
    fold_into_linear(affine, target)
    got = _head(model, site_path)(probe)
    if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max())):
        raise NotFoldable(
            f"IsoBN of {name} cannot be folded: the head does more to IsoBN's output than its "
            "first linear layer sees (the folded head computes other logits); serve the model "
            "with isobn"
        )
    return model


def _probe_input(model: nn.Module, num_features: int, first_token: bool) -> Tensor:
    """A random site input in the model's dtype: (4, D), or (4, 3, D) for a first-token head."""
    generator = torch.Generator().manual_seed(0)
    shape = (4, 3, num_features) if first_token else (4, num_features)
    parameter = next(model.parameters())
    probe = torch.randn(shape, generator=generator)
    return probe.to(device=parameter.device, dtype=parameter.dtype)


def _head(model: nn.Module, site_path: str):
    """The function from the site's input to the head's output (B, C), in eval mode."""
    site = model.get_submodule(site_path)
    head = _head_after(model, site)

    @torch.no_grad()
    def run(x: Tensor) -> Tensor:
        out = site(x)
        return out if head is None else head(out)

    return run


def _head_after(model: nn.Module, site: nn.Module) -> nn.Module | None:
    """The head that takes a Dropout site's output (``classifier`` or ``score``); None when
    the site is the head (or a linear layer of it) itself."""
    if not isinstance(site, nn.Dropout):
        return None
    base = base_model(model)
    for name in HEAD_NAMES:
        if name in base._modules:
            return base._modules[name]
    raise NotFoldable(f"{type(base).__name__} has no head module named {' or '.join(HEAD_NAMES)}")


def _first_linear(
    model: nn.Module, site_path: str, first_token: bool, probe: Tensor, name: str
) -> nn.Linear:
    """The linear layer that receives the site's input unchanged (eval mode: dropout is the
    identity): the site itself, the head after a Dropout site, or the first linear layer that
    a head module calls, when its input equals token 0 of (or all of) the probe."""
    site = model.get_submodule(site_path)
    if isinstance(site, nn.Linear):
        return site
    head = _head_after(model, site) or site
    if isinstance(head, nn.Linear):
        return head
    calls: list[tuple[nn.Linear, Tensor]] = []
    handles = [
        module.register_forward_hook(lambda m, args, out: calls.append((m, args[0])))
        for module in head.modules()
        if isinstance(module, nn.Linear)
    ]
    try:
        _head(model, site_path)(probe)
    finally:
        for handle in handles:
            handle.remove()
    wanted = probe[:, 0] if first_token else probe
    if not calls or calls[0][1].shape != wanted.shape or not torch.equal(calls[0][1], wanted):
        first = type(calls[0][0]).__name__ if calls else "no linear layer"
        raise NotFoldable(
            f"IsoBN of {name} cannot be folded: its head applies a non-linear step before its "
            f"first linear layer ({first} does not receive IsoBN's output unchanged); serve "
            "the model with isobn"
        )
    return calls[0][0]
