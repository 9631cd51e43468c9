"""Where IsoBN goes in a Hugging Face sequence classifier: a table of known heads and a probe.

A *site* is the module whose input IsoBN normalizes. For the architectures in ``TABLE`` the site
is fixed (and its class checked, against upstream refactors). For any other
``*ForSequenceClassification`` the general path runs the model once in eval mode on a few token
ids and watches its ``classifier`` (or ``score``) module:

* it receives a pooled vector (B, D): the site is that module, or the ``nn.Dropout`` child that
  hands it exactly that tensor (so IsoBN comes before dropout, as in the paper);
* it receives a sequence (B, T, D) and its output is unchanged when tokens 1.. are replaced by
  noise or dropped: a RoBERTa-style head that reads token 0 only; the site is the head;
* anything else (a head scoring every token, as decoders do; a head reading several tokens;
  no head found; a model the probe cannot run) is refused with the reason.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

CHILD_NAME = "isobn"  # name of the IsoBN submodule under its site
HEAD_NAMES = ("classifier", "score")  # where HF sequence classifiers keep their head


@dataclass(frozen=True)
class Site:
    """Where IsoBN goes in one model."""

    path: str  # attribute path of the module whose input IsoBN normalizes
    first_token: bool  # the site takes (B, T, D) and reads token 0 only
    num_features: int  # D of the normalized vector


@dataclass(frozen=True)
class _Known:
    """A table entry: the site of one architecture."""

    path: str
    module_type: str  # class name expected at path
    first_token: bool
    features: str  # attribute path of D, e.g. "classifier.in_features"


def _first_token_head(head_type: str) -> _Known:
    return _Known("classifier", head_type, True, "classifier.dense.in_features")


def _before_classifier(path: str = "dropout", module_type: str = "Dropout") -> _Known:
    return _Known(path, module_type, False, "classifier.in_features")


TABLE: dict[str, _Known] = {
    "BertForSequenceClassification": _before_classifier(),
    "AlbertForSequenceClassification": _before_classifier(),
    "DebertaV2ForSequenceClassification": _before_classifier(),
    "ModernBertForSequenceClassification": _before_classifier("drop"),
    "DistilBertForSequenceClassification": _Known(
        "pre_classifier", "Linear", False, "pre_classifier.in_features"
    ),
    "RobertaForSequenceClassification": _first_token_head("RobertaClassificationHead"),
    "XLMRobertaForSequenceClassification": _first_token_head("XLMRobertaClassificationHead"),
    "CamembertForSequenceClassification": _first_token_head("CamembertClassificationHead"),
    "MPNetForSequenceClassification": _first_token_head("MPNetClassificationHead"),
    "ElectraForSequenceClassification": _first_token_head("ElectraClassificationHead"),
}


def is_peft_model(model: nn.Module) -> bool:
    """Whether `model` is a peft ``PeftModel`` (checked without importing peft)."""
    return type(model).__module__.startswith("peft.") and hasattr(model, "get_base_model")


def base_model(model: nn.Module) -> nn.Module:
    """The transformers model inside a ``PeftModel`` (LoRA layers included); `model` itself
    otherwise. IsoBN is attached to, saved from and loaded into this model."""
    return model.get_base_model() if is_peft_model(model) else model


def is_peft_wrapper(module: nn.Module) -> bool:
    """Whether `module` is a peft training wrapper (``ModulesToSaveWrapper``: the head that
    ``task_type="SEQ_CLS"`` or ``modules_to_save`` makes trainable), which calls the module it
    wraps, or that module's trainable copy, with its own input."""
    kind = type(module)
    return kind.__module__.startswith("peft.") and "original_module" in module._modules


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a peft training wrapper; `module` itself otherwise."""
    return module._modules["original_module"] if is_peft_wrapper(module) else module


def _submodule(model: nn.Module, path: str) -> nn.Module:
    """``model.get_submodule(path)`` that looks through peft training wrappers on the way."""
    module = model
    for name in path.split(".") if path else ():
        module = unwrap(module).get_submodule(name)
    return module


def refusal(name: str, reason: str) -> ValueError:
    """The one-line error for a model IsoBN cannot be attached to."""
    return ValueError(
        f"IsoBN cannot be attached to {name}: {reason}. The supported architectures are "
        f"{', '.join(TABLE)}, and other *ForSequenceClassification models whose `classifier` "
        "receives the pooled or first-token vector. For any encoder, `isobn train --model DIR` "
        "builds its own head with IsoBN instead"
    )


def find_site(model: nn.Module) -> Site:
    """The site of `model`: from the table, else from the probe; ValueError if none is safe."""
    name = type(model).__name__
    known = TABLE.get(name)
    if known is None:
        return _probe_site(model)
    if getattr(getattr(model, "config", None), "is_decoder", False):
        raise ValueError(
            f"IsoBN cannot be attached to {name} with is_decoder=True in its config: its "
            "attention is then causal, and the first token, which its head reads, sees only "
            "itself (every text gets nearly the same vector); load the model without "
            "is_decoder, or train a decoder with `isobn train --pooling last`"
        )
    module = unwrap(_submodule(model, known.path))  # the site may be wrapped by peft
    if type(module).__name__ != known.module_type:
        raise ValueError(
            f"{name}.{known.path} is a {type(module).__name__}, expected {known.module_type}: "
            "this transformers version changed the classification head"
        )
    owner, _, attribute = known.features.rpartition(".")
    num_features = getattr(unwrap(_submodule(model, owner)), attribute)
    return Site(known.path, known.first_token, num_features)


# --- the pre-hook -------------------------------------------------------------------------------


def _normalize_input(
    module: nn.Module, args: tuple, kwargs: dict, first_token: bool, name: str
) -> tuple[tuple, dict]:
    """Forward pre-hook of a site: apply its IsoBN child to the first input.

    Pooled site: x (B, D) -> IsoBN(x). First-token site: the head reads token 0 of (B, T, D)
    only, so it gets IsoBN(x[:, 0]) as a one-token sequence (B, 1, D) and computes exactly what
    it would on the full sequence.
    """
    norm = module._modules[CHILD_NAME]  # the site's own child, so copies use their layer

    def apply(x: Tensor) -> Tensor:
        return norm(x[:, 0, :]).unsqueeze(1) if first_token else norm(x)

    if args:
        return (apply(args[0]), *args[1:]), kwargs
    if name in kwargs:
        return args, {**kwargs, name: apply(kwargs[name])}
    raise RuntimeError(f"IsoBN pre-hook: {type(module).__name__} got no input `{name}`")


def make_hook(module: nn.Module, first_token: bool):
    """The pre-hook of a site `module` (a partial of a module-level function: deepcopy/pickle
    safe); `first_token`: the site takes (B, T, D) and reads token 0 only."""
    params = list(inspect.signature(module.forward).parameters.values())
    name = params[0].name if params else "input"
    return partial(_normalize_input, first_token=first_token, name=name)


# --- the general path ---------------------------------------------------------------------------


@dataclass
class _Call:
    name: str  # direct child of the model
    module: nn.Module
    input: Tensor | None  # its first tensor input
    output: object


def _first_tensor(args: tuple, kwargs: dict) -> Tensor | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, Tensor):
            return value
    return None


def _run_once(model: nn.Module, name: str) -> list[_Call]:
    """Run `model` once in eval mode on token ids (1, 4); record its direct children's calls."""
    calls: list[_Call] = []

    def record(child_name, module, args, kwargs, output):
        calls.append(_Call(child_name, module, _first_tensor(args, kwargs), output))

    handles = [
        child.register_forward_hook(partial(record, child_name), with_kwargs=True)
        for child_name, child in model.named_children()
    ]
    modes = {module: module.training for module in model.modules()}
    vocab = getattr(model.config, "vocab_size", None) or 8
    device = next(model.parameters()).device
    ids = (torch.arange(4, device=device) % vocab).unsqueeze(0)  # (1, 4)
    try:
        model.eval()
        with torch.no_grad():
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
    except Exception as error:  # any failure of a foreign model means: not safe
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise refusal(name, f"a test forward pass on token ids failed ({first})") from None
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.training = mode
    return calls


def _reads_first_token_only(head: nn.Module, features: Tensor) -> bool:
    """Does head(features (B, T, D)) depend on token 0 only, and accept a (B, 1, D) sequence?"""
    noisy = features.clone()
    generator = torch.Generator(device=features.device).manual_seed(0)  # the user's RNG untouched
    noise = torch.randn(noisy[:, 1:].shape, generator=generator, device=features.device)
    noisy[:, 1:] = 3.0 * noise.to(features.dtype)
    mode = head.training
    head.eval()
    try:
        with torch.no_grad():
            full, other, one = head(features), head(noisy), head(features[:, :1])
    except Exception:
        return False
    finally:
        head.train(mode)
    return all(isinstance(t, Tensor) for t in (full, other, one)) and (
        torch.equal(full, other) and torch.equal(full, one)
    )


def _probe_site(model: nn.Module) -> Site:
    name = type(model).__name__
    if not name.endswith("ForSequenceClassification"):
        raise refusal(name, "IsoBN goes before the head of a *ForSequenceClassification model")
    head_name = next((n for n in HEAD_NAMES if n in model._modules), None)
    if head_name is None:
        raise refusal(name, f"it has no head module named {' or '.join(HEAD_NAMES)}")
    calls = _run_once(model, name)
    position = [i for i, call in enumerate(calls) if call.name == head_name]
    if len(position) != 1 or calls[position[0]].input is None:
        raise refusal(name, f"its `{head_name}` is not called once on a tensor")
    head_call = calls[position[0]]
    x = head_call.input
    if x.dim() == 2:
        before = calls[position[0] - 1] if position[0] > 0 else None
        if (
            before is not None
            and isinstance(before.module, nn.Dropout)
            and isinstance(before.output, Tensor)
            and before.output.data_ptr() == x.data_ptr()
            and before.output.shape == x.shape
        ):
            return Site(before.name, False, x.shape[-1])  # pooled -> IsoBN -> dropout -> head
        return Site(head_name, False, x.shape[-1])
    if x.dim() == 3 and isinstance(unwrap(head_call.module), nn.Linear):
        raise refusal(name, f"its `{head_name}` scores every token and pools afterwards")
    if x.dim() == 3:
        if _reads_first_token_only(head_call.module, x):
            return Site(head_name, True, x.shape[-1])
        raise refusal(name, f"its `{head_name}` reads more than the first token")
    raise refusal(name, f"its `{head_name}` receives a {x.dim()}-D input, not a vector per text")
