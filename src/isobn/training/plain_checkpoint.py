"""A transformers classifier directory (``isobn export``, ``save_pretrained``) where `isobn
predict` takes a checkpoint: its settings as a ModelConfig, the model wrapped to return
``ClassifierOutput``.

Labels come from config.json (``id2label``; ``problem_type`` "regression" for a regression
model); the text columns and max length from its ``isobn_inputs`` entry, which ``isobn
export`` writes (``None`` without it: predict's defaults apply). A directory saved with IsoBN
attached loads through [`isobn.hf.from_pretrained`][isobn.hf.from_pretrained], IsoBN's state
included.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import Tensor, nn

from isobn.errors import UserError, first_line
from isobn.training.model import MODEL_CONFIG_FILE, ClassifierOutput, ModelConfig
from isobn.training.pretrained import (
    check_dropout_rates,
    held_transformers_warnings,
    load_tokenizer,
)

INPUTS_KEY = "isobn_inputs"  # config.json: text_column, text_pair_column, max_length of the run


def is_plain_directory(directory: Path) -> bool:
    """A transformers model directory (config.json) that is neither an isobn checkpoint nor a
    run directory (whose config.json holds the run's settings, beside best/)."""
    isobn_files = (MODEL_CONFIG_FILE, "best", "best.old")
    if not (directory / "config.json").is_file() or any(
        (directory / name).exists() for name in isobn_files
    ):
        return False
    try:
        values = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return True  # a damaged model config: named when it is read
    return isinstance(values, dict) and "model_type" in values


def _in_a_run(directory: Path) -> bool:
    """Whether `directory` is a checkpoint folder of an `isobn train` run (best/, last/)."""
    return directory.name in ("best", "last", "best.old", "last.old") and any(
        (directory.parent / name).is_file() for name in ("log.jsonl", "metrics.json")
    )


def _hf_config(directory: Path, trust_remote_code: bool):
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(directory, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"cannot read {directory / 'config.json'} ({first})") from None
    check_dropout_rates(config.to_dict(), str(directory / "config.json"))
    name = (config.architectures or ["a model of no named class"])[0]
    if not name.endswith("ForSequenceClassification"):
        if _in_a_run(directory):  # an isobn checkpoint's encoder without its head's config
            raise UserError(
                f"{directory} has no {MODEL_CONFIG_FILE}: the checkpoint is incomplete (it holds "
                f"only {name}'s files); restore {MODEL_CONFIG_FILE} or train the run again"
            )
        raise UserError(
            f"{directory} holds {name}, not a sequence classifier: pass a run of `isobn train`, "
            "a directory written by `isobn export`, or a *ForSequenceClassification model"
        )
    return config


def read_plain_config(directory: Path, trust_remote_code: bool = False) -> ModelConfig:
    """The ModelConfig that predict needs, read from a transformers directory's config.json."""
    config = _hf_config(directory, trust_remote_code)
    regression = config.problem_type == "regression"
    names = [] if regression else [str(config.id2label[i]) for i in range(config.num_labels)]
    inputs = getattr(config, INPUTS_KEY, None)
    inputs = inputs if isinstance(inputs, dict) else {}
    return ModelConfig(
        encoder=str(directory),
        num_labels=config.num_labels,
        regression=regression,
        label_names=names,
        method="none",
        text_column=inputs.get("text_column"),
        text_pair_column=inputs.get("text_pair_column"),
        max_length=inputs.get("max_length"),
    )


class PlainClassifier(nn.Module):
    """A transformers classifier that returns ClassifierOutput (no embeddings: (B, 0))."""

    def __init__(self, model: nn.Module, config: ModelConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config

    @property
    def encoder(self) -> nn.Module:
        return self.model  # its .config has max_position_embeddings (check_max_length)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, **inputs) -> ClassifierOutput:
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, **inputs).logits
        empty = logits.new_empty(logits.shape[0], 0)
        return ClassifierOutput(logits=logits, pooled=empty, normed=empty)


def load_plain_checkpoint(directory: Path, trust_remote_code: bool = False):
    """(PlainClassifier in eval mode, tokenizer) of a transformers classifier directory."""
    from transformers import AutoModelForSequenceClassification

    config = _hf_config(directory, trust_remote_code)
    kwargs = {"trust_remote_code": trust_remote_code}
    try:
        with held_transformers_warnings():
            if isinstance(getattr(config, "isobn", None), dict):
                from isobn.hf import from_pretrained

                try:
                    model = from_pretrained(directory, **kwargs)
                except (ValueError, TypeError) as error:  # IsoBN settings it refuses
                    raise UserError(
                        f"cannot load IsoBN from {directory / 'config.json'} "
                        f"({first_line(error)}); save the model again with save_pretrained"
                    ) from None
            else:
                model = AutoModelForSequenceClassification.from_pretrained(directory, **kwargs)
    except (OSError, ValueError, RuntimeError) as error:  # transformers' load errors
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "mismatch" in first:  # its report, held back, named the keys
            first = "its weights do not fit its config.json"
        raise UserError(
            f"cannot load the classifier in {directory}: {first}; save it there again with "
            "save_pretrained"
        ) from None
    wrapped = PlainClassifier(model, read_plain_config(directory, trust_remote_code))
    return wrapped.eval(), load_tokenizer(str(directory), trust_remote_code)
