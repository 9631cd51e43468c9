"""`isobn export`: any isobn checkpoint as a plain transformers directory (and ONNX).

What it reads (``load_plain``):

* a run of ``isobn train`` (its directory or ``best/``): the harness model, converted by
  [`to_transformers`][isobn.training.to_hf.to_transformers] (norm folded, label names as in
  the data);
* a ``save_pretrained`` directory of a sequence classifier, with IsoBN attached (loaded by
  [`isobn.hf.from_pretrained`][isobn.hf.from_pretrained]) or without;
* a peft adapter directory (``adapter_config.json``): the base model named there, the adapter
  and IsoBN's saved state (``isobn.safetensors``) loaded, the adapter merged.

IsoBN is folded into the head's first linear layer ([`isobn.hf.fold`][isobn.hf.fold]). What it
writes
(``write_export``): config.json + model.safetensors + the tokenizer files, loadable by
``AutoModelForSequenceClassification``, ``AutoTokenizer`` and ``pipeline`` without isobn; the
tokenizer's ``model_max_length`` is the run's max length, and config.json's ``isobn_inputs``
records the run's text columns and max length for ``isobn predict`` (transformers ignores it).
The directory is written under a temporary name beside ``--out`` and renamed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from isobn.errors import UserError, first_line
from isobn.training.disk_full import writing
from isobn.training.plain_checkpoint import INPUTS_KEY, is_plain_directory

NOT_A_RUN = (
    "pass a run directory of `isobn train` (or its best/), a save_pretrained directory of a "
    "sequence classifier, or a peft adapter directory"
)


@dataclass
class Plain:
    """A plain transformers classifier ready to save, with its tokenizer and the run's inputs."""

    model: object  # a PreTrainedModel, eval mode
    tokenizer: object
    inputs: dict = field(default_factory=dict)  # text_column, text_pair_column, max_length


def load_plain(path: Path, trust_remote_code: bool = False) -> Plain:
    """The plain model of a run, save_pretrained or adapter directory (see the module doc),
    whose tokenizer settings export can write as strict JSON."""
    from isobn.training.pretrained import check_tokenizer_numbers

    plain = _load_plain(path, trust_remote_code)
    tokenizer_config = Path(plain.tokenizer.name_or_path, "tokenizer_config.json")
    check_tokenizer_numbers(plain.tokenizer, str(tokenizer_config))
    return plain


def _load_plain(path: Path, trust_remote_code: bool) -> Plain:
    from isobn.paths import not_a_directory, unreadable

    problem = not_a_directory(path)
    if problem is not None and not problem.endswith(" does not exist"):
        problem += ", not a directory"
    if problem is None and unreadable(path):
        raise UserError(f"{path} cannot be read (permission denied); check its permissions")
    if problem is not None:
        raise UserError(f"{problem}; {NOT_A_RUN}")
    if any((path / name).exists() for name in ("isobn_model.json", "best", "best.old")):
        return _from_run(path, trust_remote_code)
    if (path / "adapter_config.json").is_file():
        return _from_adapter(path, trust_remote_code)
    if is_plain_directory(path):
        return _from_pretrained(path, trust_remote_code)
    if (path / "metrics.json").is_file():
        raise UserError(
            f"{path} is a run without its best/ checkpoint (`isobn experiment` and `isobn "
            "study` keep checkpoints only with --keep-checkpoints); export a run that has best/"
        )
    raise UserError(f"{path} holds no model (no isobn_model.json or config.json); {NOT_A_RUN}")


def _from_run(path: Path, trust_remote_code: bool) -> Plain:
    from isobn.cli.predict import checkpoint_and_run_config
    from isobn.training.model import load_checkpoint
    from isobn.training.to_hf import to_transformers

    best, run_config = checkpoint_and_run_config(path)
    model, tokenizer = load_checkpoint(best, trust_remote_code)
    run = model.config
    inputs = {
        key: getattr(run, key) if getattr(run, key) is not None else run_config.get(key)
        for key in ("text_column", "text_pair_column", "max_length")
    }
    return Plain(to_transformers(model), tokenizer, inputs)


def _from_pretrained(path: Path, trust_remote_code: bool) -> Plain:
    import isobn.hf
    from isobn.training.plain_checkpoint import load_plain_checkpoint

    wrapped, tokenizer = load_plain_checkpoint(path, trust_remote_code)
    run = wrapped.config
    inputs = {key: getattr(run, key) for key in ("text_column", "text_pair_column", "max_length")}
    return Plain(isobn.hf.fold(wrapped.model), tokenizer, inputs)


def _from_adapter(path: Path, trust_remote_code: bool) -> Plain:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    import isobn.hf
    from isobn.hf.adapters import require_peft
    from isobn.hf.attached import CONFIG_NAME
    from isobn.training.pretrained import (
        check_dropout_rates,
        held_transformers_warnings,
        load_tokenizer,
    )

    peft = require_peft("isobn export of an adapter")
    base_path = json.loads((path / "adapter_config.json").read_text()).get(
        "base_model_name_or_path"
    )
    if not base_path or not Path(base_path).is_dir():
        raise UserError(
            f"{path}/adapter_config.json names the base model {base_path!r}, which is not a "
            "local directory; set base_model_name_or_path there to the base model's directory"
        )
    with contextlib.suppress(OSError, ValueError):  # else named by the model's load below
        config = AutoConfig.from_pretrained(base_path, trust_remote_code=trust_remote_code)
        check_dropout_rates(config.to_dict(), str(Path(base_path) / "config.json"))
    kwargs = {"trust_remote_code": trust_remote_code, "num_labels": _adapter_labels(path)}
    with held_transformers_warnings():
        base = AutoModelForSequenceClassification.from_pretrained(
            base_path, **{k: v for k, v in kwargs.items() if v is not None}
        )
        model = peft.PeftModel.from_pretrained(base, path)
    if (path / CONFIG_NAME).is_file():
        try:
            isobn.hf.load_isobn(model, path)
        except (ValueError, TypeError, KeyError) as error:  # settings IsoBN refuses
            raise UserError(
                f"cannot load IsoBN from {path / CONFIG_NAME} ({first_line(error)}); save the "
                "adapter again with save_pretrained"
            ) from None
    has_tokenizer = (path / "tokenizer_config.json").is_file()
    tokenizer = load_tokenizer(str(path if has_tokenizer else base_path), trust_remote_code)
    return Plain(isobn.hf.fold(model), tokenizer)


def _adapter_labels(path: Path) -> int | None:
    """The number of classes of the head saved with the adapter (modules_to_save), if any."""
    from safetensors import safe_open

    weights = path / "adapter_model.safetensors"
    if not weights.is_file():
        return None
    with safe_open(str(weights), framework="pt") as handle:
        for key in handle.keys():  # noqa: SIM118 -- safe_open has no iteration
            if key.endswith(("classifier.weight", "score.weight", "out_proj.weight")):
                return handle.get_slice(key).get_shape()[0]
    return None


# --- writing ------------------------------------------------------------------------------------


def check_out(out: Path) -> None:
    """--out must be a new or empty directory; one-line UserError otherwise."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a new or empty directory")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out} is not empty; pass a new or empty directory")


def check_strict_json(directory: Path, out: Path) -> None:
    """Every JSON file that transformers wrote into `directory` (config.json, the tokenizer's)
    is strict JSON: a bare NaN or Infinity (which its json.dumps writes) is a one-line
    UserError naming the file as in `out`. The loaders refuse such numbers in the source's
    tokenizer's settings already (model.check_tokenizer_numbers), and transformers writes a
    config.json's as {"__float__": "NaN"}; this keeps any other way out."""
    from isobn import json_text

    for path in sorted(directory.glob("*.json")):
        found = json_text.first_non_finite(json.loads(path.read_text(encoding="utf-8")))
        if found is not None:
            raise UserError(
                f"the export's {out / path.name} would set {found[0]} to "
                f"{json_text.word(found[1])}, which is not a JSON number: set a number for "
                "it in the model's own file, or remove the key, and export again"
            )


def write_export(plain: Plain, out: Path, onnx: bool = False) -> None:
    """Save `plain` (and model.onnx) into a temporary directory beside `out`, renamed to `out`
    at the end; nothing is left behind on failure."""
    from isobn.training.onnx_export import ONNX_FILE, write_onnx

    check_out(out)
    with writing(out):  # a full disk, however a writer words it: one line naming `out`
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        inputs = {k: v for k, v in plain.inputs.items() if v is not None}
        if inputs:
            setattr(plain.model.config, INPUTS_KEY, inputs)
        if inputs.get("max_length"):
            plain.tokenizer.model_max_length = inputs["max_length"]
        with writing(out):
            plain.model.save_pretrained(tmp)
            plain.tokenizer.save_pretrained(tmp)
            check_strict_json(tmp, out)
            if onnx:
                write_onnx(plain.model, plain.tokenizer, tmp / ONNX_FILE)
            os.rename(tmp, out)  # replaces an empty directory (checked above)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
