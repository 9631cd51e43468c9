"""The models an analysis compares, and their embeddings of one list of examples.

A model is a pre-trained encoder (``minilm``, a model directory, a hub name) or an ``isobn
train`` checkpoint (a run directory or its ``best/``), optionally labelled ``label=path``.
``embed`` runs it through ``isobn.training.embeddings.infer`` and returns float32 (N, H) matrices; a
checkpoint's norm is applied (in eval mode, with its running statistics, as at inference) to
the pooling it was trained on. A checkpoint's method without a norm (none, correg, istar) has
the identity as its transform: its classifier input is the pooled embedding itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from isobn.errors import UserError

logger = logging.getLogger(__name__)

LAYER_POOLINGS = ("cls", "mean")  # per-layer embeddings; the HF pooler exists only on top


@dataclass(frozen=True)
class ModelSource:
    """One model to analyse: a pre-trained encoder or an `isobn train` checkpoint."""

    label: str  # column label in tables and legends
    spec: str  # what the user passed
    path: str  # encoder name/directory, or the checkpoint directory (the one with the weights)
    checkpoint: bool


def parse_model_spec(spec: str) -> ModelSource:
    """``[label=]path``: a run directory, its best/ directory, or an encoder name/directory.

    Without a label: the directory name (the run's name for a best/ directory) or the name.
    """
    from isobn.training.checkpoint import resolve_directory
    from isobn.training.model import MODEL_CONFIG_FILE
    from isobn.training.pretrained import check_model_directory, resolve_model_path

    label, path = None, spec
    if "=" in spec and not os.path.exists(spec):
        label, path = spec.split("=", 1)
        label = label.strip()
        if not label or not path:
            raise UserError(f"bad model {spec!r}: write label=path, e.g. isobn=runs/mr-isobn")
    directory = Path(path)
    if os.path.lexists(path):  # a run or model directory: no file, pipe, unreadable folder
        check_model_directory(path)
    if directory.is_dir() and not (directory / MODEL_CONFIG_FILE).is_file():
        best = resolve_directory(directory / "best")
        if best is not None and (best / MODEL_CONFIG_FILE).is_file():
            directory = best
    if (directory / MODEL_CONFIG_FILE).is_file():
        if label is None:
            named = directory.parent if directory.name in ("best", "best.old") else directory
            label = named.resolve().name
        return ModelSource(label, spec, str(directory), checkpoint=True)
    if directory.is_dir() and (directory / "last").is_dir():
        raise UserError(
            f"{path} is an unfinished `isobn train` run without a best/ checkpoint: "
            "let it evaluate once, or pass another model"
        )
    resolve_model_path(path)  # one-line UserError for a directory that is not a model
    if label is None:
        label = Path(path).name if os.path.isdir(path) else path
    return ModelSource(label, spec, path, checkpoint=False)


def parse_sources(specs: Sequence[str]) -> list[ModelSource]:
    """``parse_model_spec`` of every spec; refuses two models with the same label."""
    sources = [parse_model_spec(spec) for spec in specs]
    labels = [s.label for s in sources]
    duplicated = sorted({x for x in labels if labels.count(x) > 1})
    if duplicated:
        raise UserError(
            f"two models are labelled {duplicated[0]!r}: name them, e.g. --compare a=PATH b=PATH"
        )
    return sources


def default_pooling(sources: Sequence[ModelSource]) -> str:
    """The pooling of the first checkpoint compared, else the HF pooler."""
    from isobn.training.model import read_model_config

    for source in sources:
        if source.checkpoint:  # validated: a damaged isobn_model.json is one line
            return read_model_config(source.path).pooling
    return "pooler"


@dataclass
class ModelEmbeddings:
    """Embeddings of one model: pooled (N, H) matrices and, with layers="all", per layer."""

    source: ModelSource
    pooled: dict[str, np.ndarray]  # "cls" / "pooler" / "mean", and "normed" for a norm
    layers: dict[str, list[np.ndarray]]  # "cls" / "mean" -> L + 1 matrices (N, H); 0: embeddings
    norm: str | None = None  # the checkpoint's norm, None when it has none
    norm_pooling: str | None = None  # the pooling the norm was trained on
    method: str | None = None  # a checkpoint's method, canonical spec; None for an encoder
    trained_pooling: str | None = None  # a checkpoint's pooling, with or without a norm

    @property
    def transform(self) -> str | None:
        """The map from the pooled embedding to the classifier input: the method's norm part
        (canonical spec), "identity" for a method without a norm, None for an encoder."""
        from isobn.methods import parse_method

        if self.method is None:
            return self.norm  # built without its method (e.g. by hand): the norm's name
        return parse_method(self.method).transform

    def before_after(self) -> tuple[str, str] | None:
        """Keys of ``pooled`` before the method's transform and after it (the classifier input;
        the same key for the identity); None for an encoder or when that pooling is not
        measured."""
        if self.norm is not None:
            return (self.norm_pooling, "normed") if "normed" in self.pooled else None
        if self.method is not None and self.trained_pooling in self.pooled:
            return (self.trained_pooling, self.trained_pooling)
        return None


def decoder_poolings(
    source: ModelSource, requested: str | None, trained: str | None, default: str, encoder_config
) -> list[str] | None:
    """The poolings of a causal decoder (from its `encoder_config`), None for any other model:
    cls and pooler are refused, as `isobn train` refuses them (its first token sees only
    itself: nearly one vector for every text), and "all" measures last and mean."""
    from isobn.training.pooling import check_pooler, is_causal_decoder

    if not is_causal_decoder(encoder_config):
        return None
    if requested == "all":
        logger.warning(
            "%s is a causal decoder: measuring last and mean (its first token, which cls and "
            "pooler read, sees only itself)",
            source.label,
        )
        return ["last", "mean"]
    wanted = requested or trained or default
    check_pooler(encoder_config, wanted)
    return [wanted]


def resolve_poolings(
    source: ModelSource, requested: str | None, trained: str | None, default: str, has_pooler: bool
) -> list[str]:
    """The poolings measured for one model (see isobn.analysis)."""
    if requested == "all":
        wanted = ["cls", "pooler", "mean"]
    elif requested is not None:
        wanted = [requested]
    else:
        wanted = [trained or default]
    if not has_pooler and "pooler" in wanted:
        if requested == "pooler" or (requested is None and trained == "pooler"):
            raise UserError(f"{source.label} has no pooler: use --pooling cls or --pooling mean")
        if requested == "all":
            logger.warning("%s has no pooler: measuring cls and mean only", source.label)
            wanted.remove("pooler")
        else:
            wanted = ["cls"]
    if trained is not None and trained not in wanted:
        logger.warning(
            "%s was trained on %s pooling: its norm is not applied to %s",
            source.label,
            trained,
            "/".join(wanted),
        )
    return wanted


@dataclass
class _Loaded:
    encoder: object  # the HF encoder
    tokenizer: object
    norm: str | None = None  # the checkpoint's norm (None: none)
    norm_module: object = None  # its module, applied to `trained` pooling
    trained: str | None = None  # the checkpoint's pooling (None: a pre-trained encoder)
    method: str | None = None  # the checkpoint's method, canonical spec


def _load(source: ModelSource, trust_remote_code: bool) -> _Loaded:
    from isobn.methods import canonical
    from isobn.training.model import load_checkpoint
    from isobn.training.pretrained import load_encoder, load_tokenizer

    if not source.checkpoint:
        encoder = load_encoder(source.path, trust_remote_code)
        return _Loaded(encoder, load_tokenizer(source.path, trust_remote_code))
    model, tokenizer = load_checkpoint(source.path, trust_remote_code)
    method = canonical(model.config.method)
    loaded = _Loaded(model.encoder, tokenizer, trained=model.config.pooling, method=method)
    if model.config.norm != "none":
        loaded.norm, loaded.norm_module = model.config.norm, model.norm
    return loaded


def _encoder_forward(loaded: _Loaded, poolings: list[str], with_layers: bool):
    """isobn.training.embeddings.Forward: the poolings (B, H), "normed" (B, H) when the
    checkpoint's norm
    applies, and "<pooling>/<layer>" (B, H) for every layer with ``with_layers``."""
    from isobn.training.pooling import pool_hidden, pool_output

    apply_norm = loaded.norm is not None and loaded.trained in poolings

    def forward(batch):
        out = loaded.encoder(**batch, output_hidden_states=with_layers)
        vectors = {p: pool_output(out, batch["attention_mask"], p) for p in poolings}
        if apply_norm:
            vectors["normed"] = loaded.norm_module(vectors[loaded.trained])
        if with_layers:
            for i, hidden in enumerate(out.hidden_states):  # L + 1 of (B, T, H)
                for p in LAYER_POOLINGS:
                    vectors[f"{p}/{i}"] = pool_hidden(hidden, batch["attention_mask"], p)
        return vectors

    return forward


def embed(
    source: ModelSource,
    examples: Sequence,
    *,
    pooling: str | None = None,
    default_pooling: str = "pooler",
    layers: str = "last",
    max_length: int = 128,
    batch_size: int = 64,
    device: str = "cpu",
    trust_remote_code: bool = False,
    regression: bool = False,
) -> ModelEmbeddings:
    """Embed ``examples`` (isobn.tasks.Example) with one model, in length-sorted batches.

    Returns float32 matrices in the order of ``examples``. A checkpoint's norm is applied to
    its own pooling (key ``"normed"``), in eval mode.
    """
    from isobn.training.data import check_tokens, encode
    from isobn.training.embeddings import infer
    from isobn.training.model import read_model_config
    from isobn.training.pretrained import load_encoder_config, load_tokenizer

    if not examples:
        raise UserError("no examples to embed: pass at least 2")
    # what the model cannot measure, and texts it cannot read, are refused before its weights
    trained = read_model_config(source.path).pooling if source.checkpoint else None
    config = load_encoder_config(source.path, trust_remote_code)
    decoder = decoder_poolings(source, pooling, trained, default_pooling, config)
    tokenizer = load_tokenizer(source.path, trust_remote_code)
    split = encode(examples, tokenizer, max_length, regression)
    check_tokens("analysed", examples, split, tokenizer)  # as isobn train refuses them
    loaded = _load(source, trust_remote_code)
    has_pooler = getattr(loaded.encoder, "pooler", None) is not None
    poolings = decoder or resolve_poolings(
        source, pooling, loaded.trained, default_pooling, has_pooler
    )
    loaded.encoder.eval().to(device)
    if loaded.norm_module is not None:
        loaded.norm_module.eval().to(device)
    pad_id = loaded.tokenizer.pad_token_id or 0
    forward = _encoder_forward(loaded, poolings, layers == "all")
    outputs = infer(
        forward, split, batch_size, pad_id, device=device, desc=f"embedding ({source.label})"
    )
    pooled = {p: outputs.pop(p) for p in poolings}
    if "normed" in outputs:
        pooled["normed"] = outputs.pop("normed")
    by_layer: dict[str, list[np.ndarray]] = {}
    if outputs:  # "<pooling>/<layer>" of every layer
        count = len(outputs) // len(LAYER_POOLINGS)
        by_layer = {p: [outputs[f"{p}/{i}"] for i in range(count)] for p in LAYER_POOLINGS}
    trained = loaded.trained if loaded.norm else None
    return ModelEmbeddings(
        source, pooled, by_layer, loaded.norm, trained, loaded.method, loaded.trained
    )
