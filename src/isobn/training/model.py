"""Encoder + pooling + method (norm, regularisers) + dropout + linear, and its checkpoints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from torch import Tensor, nn

from isobn.errors import UserError, first_line
from isobn.methods import canonical, parse_method
from isobn.training import checkpoint as ckpt
from isobn.training import safe_files
from isobn.training.attention_masks import encoder_attention_mask
from isobn.training.config import POOLINGS, migrate_config
from isobn.training.pooling import pool_output
from isobn.training.pretrained import WEIGHTS_FILE, load_encoder, load_tokenizer

MODEL_CONFIG_FILE = "isobn_model.json"


@dataclass
class ModelConfig:
    """Everything needed to rebuild a classifier; stored as isobn_model.json in checkpoints."""

    encoder: str  # what the user asked for: "minilm", a directory or a hub name
    num_labels: int  # 1 for regression
    regression: bool = False
    label_names: list[str] = field(default_factory=list)
    pooling: str = "pooler"  # the released code feeds the HF pooler output to the head
    method: str = "isobn"  # a method spec (isobn.methods), canonical
    dropout: float | None = None  # None: the encoder's classifier/hidden dropout, as in HF heads
    peft: str | None = None  # LoRA spec (isobn.hf.adapters): adapters injected into the encoder
    # what the model reads, as it was trained: `isobn predict` reads the same (None in
    # checkpoints written before isobn recorded them: predict falls back to the run's
    # config.json, then to column "text" and 128 tokens)
    text_column: str | None = None  # the column of the text in the training files
    text_pair_column: str | None = None  # the second text's column; None: single texts
    max_length: int | None = None  # tokens per input

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise UserError(
                f"unknown pooling {self.pooling!r}: choose one of {', '.join(POOLINGS)}"
            )
        self.method = canonical(self.method)

    @property
    def norm(self) -> str:
        """The name of the method's norm part: `none`, `isobn`, `batchnorm`, ..."""
        return parse_method(self.method).norm.name

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """isobn_model.json of this or an earlier version (see migrate_config)."""
        values = migrate_config(values)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class ClassifierOutput:
    logits: Tensor  # (B, num_labels)
    pooled: Tensor  # (B, H) pooled embedding before the norm
    normed: Tensor  # (B, H) after the norm, before dropout


class SequenceClassifier(nn.Module):
    """pooled = pool(encoder(x)); logits = linear(dropout(norm(pooled))).

    The method's regularisers (`self.regularisers`, in the spec's order, named by
    `self.regulariser_names`) are modules whose forward(pooled (B, H)) returns their weighted
    loss term; training adds them to the task loss. Their buffers are saved with the model.
    """

    def __init__(self, config: ModelConfig, encoder: nn.Module) -> None:
        super().__init__()
        self.config = config
        if config.peft is not None:  # LoRA layers in the encoder, its own weights frozen
            from isobn.hf.adapters import add_lora, parse_peft

            encoder = add_lora(encoder, parse_peft(config.peft))
        self.encoder = encoder
        enc = encoder.config
        hidden = enc.hidden_size if hasattr(enc, "hidden_size") else enc.dim
        spec = parse_method(config.method)
        self.norm = spec.norm.build(hidden)
        p = config.dropout
        if p is None:
            p = getattr(enc, "classifier_dropout", None)
            p = p if p is not None else getattr(enc, "hidden_dropout_prob", 0.1)
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(hidden, config.num_labels)
        std = getattr(enc, "initializer_range", 0.02)
        nn.init.normal_(self.classifier.weight, std=std)
        nn.init.zeros_(self.classifier.bias)
        self.regularisers = nn.ModuleList(part.build(hidden) for part in spec.regularisers)
        self.regulariser_names = [part.name for part in spec.regularisers]

    def pool(self, input_ids: Tensor, attention_mask: Tensor, **encoder_inputs) -> Tensor:
        """Pooled embedding (B, H) of token ids (B, T)."""
        mask = encoder_attention_mask(self.encoder, attention_mask)  # no device read in it
        out = self.encoder(input_ids=input_ids, attention_mask=mask, **encoder_inputs)
        return pool_output(out, attention_mask, self.config.pooling)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, **encoder_inputs):
        pooled = self.pool(input_ids, attention_mask, **encoder_inputs)  # (B, H)
        normed = self.norm(pooled)
        logits = self.classifier(self.dropout(normed))  # (B, C)
        return ClassifierOutput(logits=logits, pooled=pooled, normed=normed)


def build_model(config: ModelConfig, trust_remote_code: bool = False) -> SequenceClassifier:
    """A classifier on a pre-trained encoder; the head is newly initialised."""
    return SequenceClassifier(config, load_encoder(config.encoder, trust_remote_code))


def save_checkpoint(model: SequenceClassifier, tokenizer, directory: str | Path) -> None:
    """Write weights (safetensors, IsoBN buffers included), isobn_model.json, the encoder's
    config.json and the tokenizer into `directory` (the caller makes it atomic)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    safe_files.write_json_atomically(directory / MODEL_CONFIG_FILE, asdict(model.config))
    model.encoder.config.save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)


CHECKPOINT_FIX = "pass a best/ directory written by `isobn train`, unchanged"


def read_model_config(directory: str | Path) -> ModelConfig:
    """The ModelConfig of a checkpoint directory (isobn_model.json), validated: a missing,
    damaged or impossible file is a one-line UserError naming it (the one reader of the file:
    predict and analyze both read checkpoints through it)."""
    directory = Path(directory)
    config_file = directory / MODEL_CONFIG_FILE
    if not config_file.is_file():
        raise UserError(
            f"{directory} is not an isobn checkpoint (no {MODEL_CONFIG_FILE}): "
            "pass the best/ directory written by `isobn train`"
        )
    try:
        values = ckpt.read_json(config_file)
        problem = _model_config_problem(values)
        if problem:
            raise ckpt.DamagedFileError(config_file, f"is damaged ({problem})")
        try:
            return ModelConfig.from_dict(values)
        except (TypeError, ValueError, UserError) as error:
            raise ckpt.DamagedFileError(config_file, f"is damaged ({first_line(error)})") from None
    except ckpt.DamagedFileError as error:
        raise UserError(f"{error}; {CHECKPOINT_FIX}") from None


def _model_config_problem(values: dict) -> str | None:
    """What makes an isobn_model.json unusable, in words; None when it is fine."""
    labels, names = values.get("num_labels"), values.get("label_names", [])
    if type(labels) is not int or labels < 1:
        return f"num_labels is {labels!r}, not a positive integer"
    if not isinstance(values.get("regression", False), bool):
        return f"regression is {values['regression']!r}, not true or false"
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return f"label_names is {names!r}, not a list of strings"
    if names and len(names) != labels:
        return f"{len(names)} label_names for num_labels {labels}"
    dropout = values.get("dropout")
    if dropout is not None and (
        isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1
    ):
        return f"dropout is {dropout!r}, not in [0, 1)"
    if values.get("peft") is not None and not isinstance(values["peft"], str):
        return f"peft is {values['peft']!r}, not a LoRA spec"
    if not isinstance(values.get("encoder"), str):
        return f"encoder is {values.get('encoder')!r}, not a name"
    for key in ("text_column", "text_pair_column"):
        column = values.get(key)
        if column is not None and (not isinstance(column, str) or not column):
            return f"{key} is {column!r}, not a column name"
    if values.get("text_pair_column") is not None and values.get("text_column") is None:
        return "text_pair_column without text_column"
    length = values.get("max_length")
    if length is not None and (type(length) is not int or length < 1):
        return f"max_length is {length!r}, not a positive integer"
    return None


def load_checkpoint(directory: str | Path, trust_remote_code: bool = False):
    """(model, tokenizer) from a directory written by save_checkpoint; no pickle involved.
    A missing, damaged or inconsistent file is a one-line UserError naming it."""
    directory = Path(directory)
    config = read_model_config(directory)
    try:
        weights = ckpt.read_tensors(directory / WEIGHTS_FILE)
    except ckpt.DamagedFileError as error:
        raise UserError(f"{error}; {CHECKPOINT_FIX}") from None
    config_for_load = ModelConfig(**{**asdict(config), "encoder": str(directory)})
    encoder = load_encoder(str(directory), trust_remote_code, weights=False)
    model = SequenceClassifier(config_for_load, encoder)
    model.config = config
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise UserError(
            f"{directory / WEIGHTS_FILE} does not fit its {MODEL_CONFIG_FILE} "
            f"({first_line(error)}); {CHECKPOINT_FIX}"
        ) from None
    tokenizer = load_tokenizer(str(directory), trust_remote_code)
    return model.eval(), tokenizer
