"""The settings, each defined once: a dataclass field with its default, its help text and the
rule its value obeys. The command line is built from these fields (isobn.cli.options), each
run's config.json is ``asdict(TrainConfig)`` (flat), and ``TrainConfig.from_dict`` reads the
config.json of any version.

    DataOptions   where the examples come from: a named task or CSV/TSV/JSONL files (shared by
                  training, experiments and analysis)
    TrainConfig   DataOptions + model, method, optimisation, evaluation and run settings

The method (what happens to the pooled embedding) is one spec string, e.g. ``isobn``,
``isobn:beta=0.25`` or ``none`` (isobn.methods); the IsoBN defaults live in ``IsoBN.__init__``.
Versions before 1.0 spelled it ``norm``, ``isobn_beta``, ``isobn_momentum`` and
``isobn_correlation`` (and ``isobn-legacy``): the saved files of those versions are read by
``migrate_config`` (the one place that knows those keys); nothing else accepts them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from isobn.errors import UserError
from isobn.methods import METHODS, canonical, parse_method
from isobn.training.safe_files import check_name

PRECISIONS = ("fp32", "bf16", "fp16")
POOLINGS = ("pooler", "cls", "mean", "last")
REPORT_TO = ("none", "tensorboard", "wandb")
DEFAULT_TASK = "mr"
# `isobn experiment` and `isobn study`: one flag, one meaning
SHARD_HELP = "K/N: run every N-th run (of a study: cell), starting at the K-th; shards share --out"
KEEP_CHECKPOINTS_HELP = (
    "keep every run's best/ and last/ checkpoints; by default a finished run keeps only what "
    "the result tables need (config.json, log.jsonl, metrics.json)"
)


@dataclass(frozen=True)
class Rule:
    """What a value must be, in words for the message `--flag must be TEXT, got VALUE`."""

    test: Callable[[Any], bool]
    text: str
    finite: bool = False  # numbers: NaN and infinities are refused first


POSITIVE = Rule(lambda v: v >= 1, "a positive integer")
NON_NEGATIVE = Rule(lambda v: v >= 0, ">= 0")
POSITIVE_NUMBER = Rule(lambda v: v > 0, "> 0")
FRACTION = Rule(lambda v: 0 <= v < 1, "in [0, 1)")


def setting(
    default: Any = MISSING,
    help: str | Callable[[], str] = "",
    *,
    group: str = "training",
    flag: str | None = None,
    metavar: str | None = None,
    choices: tuple[str, ...] | None = None,
    rule: Rule | None = None,
    resume_free: bool = False,
    files_only: bool = False,
) -> Any:
    """A dataclass field with what the command line and the checks need.

    flag: the option (default --name-with-dashes); choices / rule: what a value may be;
    resume_free: changing it does not change what a run computes, so --resume may change it;
    files_only: it describes --train/--dev files, and a named task would ignore it.
    """
    metadata = {
        "help": help,
        "group": group,
        "flag": flag,
        "metavar": metavar,
        "choices": choices,
        "rule": rule,
        "resume_free": resume_free,
        "files_only": files_only,
    }
    return field(default=default, metadata=metadata)


def flag_of(f) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _task_help() -> str:
    from isobn.tasks import TASK_NAMES

    return f"a task: {', '.join(TASK_NAMES)} (default {DEFAULT_TASK}; not with --train)"


@dataclass
class DataOptions:
    """Where the examples come from: a named task (`task`, `data_dir`) or files (`train_file`,
    `dev_file`, `test_file` and their columns), subsampled by `max_train` / `max_eval`."""

    task: str | None = setting(None, _task_help, group="data")  # None: mr, or the files
    data_dir: str | None = setting(
        None, "GLUE in the original TSV layout (else: the datasets hub)", group="data"
    )
    train_file: str | None = setting(
        None,
        "CSV/TSV/JSONL training file (with --dev) instead of --task",
        group="data",
        flag="--train",
        metavar="FILE",
    )
    dev_file: str | None = setting(
        None,
        "development file (with --train): the dev split; training evaluates on it and keeps "
        "its best checkpoint",
        group="data",
        flag="--dev",
        metavar="FILE",
    )
    test_file: str | None = setting(
        None,
        "test file (with --train): the test split; training scores it with the best checkpoint",
        group="data",
        flag="--test",
        metavar="FILE",
        files_only=True,
    )
    text_column: str = setting("text", "column of the text", group="data", files_only=True)
    text_pair_column: str | None = setting(
        None, "column of a second text (pairs)", group="data", files_only=True
    )
    label_column: str = setting("label", "column of the label", group="data", files_only=True)
    regression: bool = setting(
        False,
        "numeric labels: a regression task (trained with the MSE loss)",
        group="data",
        files_only=True,
    )
    max_train: int | None = setting(
        None, "stratified subsample of the training set", group="data", rule=POSITIVE
    )
    max_eval: int | None = setting(
        None,
        "stratified subsample of each dev/test split (default: all of each, whatever --max-train)",
        group="data",
        rule=POSITIVE,
    )

    def __post_init__(self) -> None:
        if self.task is None and not self.train_file:
            self.task = DEFAULT_TASK

    def validate_data(self) -> None:
        """One-line UserErrors for contradictory or incomplete data options."""
        if self.train_file and (self.task is not None or self.data_dir is not None):
            given = " and ".join(
                flag
                for flag, value in (("--task", self.task), ("--data-dir", self.data_dir))
                if value is not None
            )
            raise UserError(
                f"--train FILE replaces a named task: drop {given}, or drop --train and --dev"
            )
        if (self.train_file or self.dev_file) and not (self.train_file and self.dev_file):
            raise UserError("generic files need both --train FILE and --dev FILE")
        if not self.train_file:
            ignored = [
                flag_of(f)
                for f in fields(self)
                if f.metadata.get("files_only") and getattr(self, f.name) != f.default
            ]
            if ignored:
                raise UserError(
                    f"{', '.join(ignored)} describe{'s' if len(ignored) == 1 else ''} "
                    f"--train/--dev files, and task {self.task} has its own: drop "
                    f"{'it' if len(ignored) == 1 else 'them'}, or pass --train and --dev files"
                )


def load_run_task(cfg):
    """The isobn.tasks.Task of a config with the data options: a named task or files."""
    from isobn import tasks

    if cfg.train_file:
        return tasks.load_files(
            cfg.train_file,
            cfg.dev_file,
            cfg.test_file,
            text_column=cfg.text_column,
            text_pair_column=cfg.text_pair_column,
            label_column=cfg.label_column,
            regression=cfg.regression,
            max_train=cfg.max_train,
            max_eval=cfg.max_eval,
            seed=0,
        )
    return tasks.load_task(
        cfg.task or DEFAULT_TASK,
        data_dir=cfg.data_dir,
        max_train=cfg.max_train,
        max_eval=cfg.max_eval,
        seed=0,
    )


def _method_help() -> str:
    names = ", ".join(f"{name} ({d.role})" for name, d in METHODS.items())
    return (
        f"what acts on the pooled embedding: a norm, then '+' regularisers, each with "
        f"name:key=value parameters, e.g. isobn:beta=0.25; methods: {names}; default isobn"
    )


@dataclass(kw_only=True)
class TrainConfig(DataOptions):
    """Everything a run depends on; saved as config.json. Defaults follow the paper's setup
    (AdamW, linear warmup/decay, early stopping on dev) scaled to small offline models."""

    out: str = setting(help="output directory", group="run", resume_free=True)  # every command's
    resume: bool = setting(
        False, "continue from the last checkpoint in --out", group="run", resume_free=True
    )
    keep_last: bool = setting(
        False,
        "keep last/, the resume point (weights, optimizer and scheduler state: about 3x the "
        "size of best/), when the run finishes; by default it is removed and best/ stays",
        group="run",
        resume_free=True,
    )
    model: str = setting(
        "minilm",
        "`minilm` (packaged), a model directory or a hub name; `isobn analyze` also takes an "
        "`isobn train` run",
        group="model",
    )
    pooling: str = setting(
        "pooler",  # the released code feeds the HF pooler output to the head
        "pooled embedding: pooler (the HF pooler output), cls ([CLS]), mean (of the tokens) or "
        "last (the last token: for causal decoders); `isobn analyze` also takes all",
        group="model",
        choices=POOLINGS,
    )
    dropout: float | None = setting(
        None, "classifier dropout (default: the encoder's)", group="model", rule=FRACTION
    )
    trust_remote_code: bool = setting(
        False, "allow model code from the model directory/hub (off by default)", group="model"
    )
    name: str | None = setting(
        None,
        "what metrics.json, result tables and experiment directories call the data of "
        "--train/--dev files (default: the training file's name: data/sent/train.csv -> sent, "
        "reviews_train.csv -> reviews)",
        group="data",
        files_only=True,
    )
    method: str = setting("isobn", _method_help, group="method")
    peft: str | None = setting(
        None,
        "fine-tune the encoder with LoRA adapters only (needs isobn[peft]): "
        "lora:r=8,alpha=16,dropout=0.1,target=query,value (default: full fine-tuning)",
        group="method",
        metavar="SPEC",
    )
    max_length: int = setting(128, "tokens per text, longer ones truncated", rule=POSITIVE)
    batch_size: int = setting(  # 32: the paper's
        32,
        "examples per batch: of training in train and experiment, of inference in analyze and "
        "predict",
        rule=POSITIVE,
    )
    drop_last: bool = setting(
        False,  # off: every example every epoch; the released IsoBN train.py drops it
        "drop each epoch's last incomplete training batch (and the examples left over)",
    )
    eval_batch_size: int = setting(128, "evaluation batch size", rule=POSITIVE, resume_free=True)
    learning_rate: float = setting(
        2e-5, "AdamW learning rate", flag="--lr", rule=Rule(lambda v: v > 0, "> 0", True)
    )
    weight_decay: float = setting(
        0.01,
        "AdamW weight decay, not on biases and norm weights",
        rule=Rule(lambda v: v >= 0, ">= 0", True),
    )
    adam_epsilon: float = setting(
        1e-8,  # torch's and the HF Trainer's; the released IsoBN train.py uses 1e-6
        "AdamW epsilon, added to the root of the second moment",
        rule=Rule(lambda v: v > 0, "> 0", True),
    )
    warmup_ratio: float = setting(0.1, "share of the steps warming the lr up", rule=FRACTION)
    epochs: int = setting(3, "passes over the training set", rule=POSITIVE)
    grad_accum: int = setting(1, "micro-batches per optimizer step", rule=POSITIVE)
    max_grad_norm: float = setting(
        1.0,
        "gradient clipping norm (0: no clipping, as the released IsoBN code)",
        rule=NON_NEGATIVE,
    )
    precision: str = setting("fp32", "autocast precision (fp16: GPU only)", choices=PRECISIONS)
    eval_every_steps: int | None = setting(
        None, "also evaluate every N steps (default: at the end of every epoch)", rule=POSITIVE
    )
    patience: int | None = setting(
        None, "early stopping after N evaluations without improvement", rule=POSITIVE
    )
    save_every_steps: int | None = setting(
        None,
        "resume points every N steps (besides evaluations)",
        rule=POSITIVE,
        resume_free=True,
    )
    seed: int = setting(
        42,
        "random seed: of initialisation, dropout and data order in training, of the subsample "
        "in analyze",
        rule=Rule(lambda v: 0 <= v < 2**32, "in [0, 2**32 - 1]"),
    )
    log_every_steps: int = setting(20, "steps per log.jsonl line", rule=POSITIVE, resume_free=True)
    isotropy_examples: int = setting(
        2000,
        "dev rows whose isotropy is logged at each evaluation (and training rows a regulariser "
        "with a reference embedding sees)",
        rule=Rule(lambda v: v >= 0, ">= 0 (0: no isotropy)"),
    )
    cpu: bool = setting(False, "use the CPU even with a GPU", group="run", resume_free=True)
    # the same run up to float rounding, so --resume may switch it
    compile: bool = setting(
        False,
        "torch.compile the training forward (one graph for all lengths); for GPUs: on a "
        "2-core CPU it ran at 0.97x eager after a minute of compiling",
        group="run",
        resume_free=True,
    )
    report_to: str = setting(
        "none",
        "also log loss, lr, dev metrics and isotropy to this tracker (accelerate's)",
        group="run",
        choices=REPORT_TO,
        resume_free=True,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.method = canonical(self.method, "--method")

    def validate(self) -> None:
        """One-line UserErrors for impossible settings, before any work starts."""
        for f in fields(self):
            check_value(f, getattr(self, f.name))
        if self.precision == "fp16" and self.cpu:
            raise UserError("fp16 needs a GPU: drop --cpu or use --precision bf16 or fp32")
        if self.name is not None:
            check_name(self.name, "--name")
        if self.peft is not None:
            from isobn.hf.adapters import parse_peft, require_peft

            self.peft = parse_peft(self.peft).canonical()
            require_peft()
        self.validate_data()

    @property
    def data_name(self) -> str:
        """What the run trains on, as metrics.json, result tables and experiment directories
        name it (see data_name_of)."""
        return data_name_of(asdict(self))

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A config from config.json of this or an earlier version (unknown keys ignored, a
        setting it lacks at its default: see saved_settings)."""
        return cls(**_known(cls, migrate_config(values)))

    def resume_changes(self, saved: TrainConfig) -> list[str]:
        """`name old -> new` for each setting that differs from `saved` and matters to what
        the run computes (a resumed run must compute the same thing)."""
        ours, theirs = asdict(self), asdict(saved)
        return [
            f"{f.name} {theirs[f.name]!r} -> {ours[f.name]!r}"
            for f in fields(self)
            if not f.metadata.get("resume_free") and theirs[f.name] != ours[f.name]
        ]


def data_name_of(config: dict) -> str:
    """The name of the data of a run's config (config.json, of any version): its task's
    registered name (`SST-2` -> `sst2`; an unknown name as written), or for files --name,
    else file_task_name of the training file."""
    if config.get("train_file"):
        return config.get("name") or file_task_name(config["train_file"])
    from isobn.tasks import task_key

    task = config.get("task") or DEFAULT_TASK
    try:
        return task_key(task)
    except UserError:
        return task


def file_task_name(train_file: str) -> str:
    """A name for the data of a training file: its name without the extension and without a
    `train`/`training` part (reviews_train.csv -> reviews), else its folder's name
    (data/sent/train.csv -> sent); characters other than letters, digits and _ . + - become _,
    so that the name is a directory name."""
    path = Path(train_file)
    stem = re.sub(r"(?i)(?<![a-z0-9])(train|training)(?![a-z0-9])", "", path.stem)
    name = re.sub(r"([_.+-])[_.+-]+", r"\1", stem).strip("_.+- ")
    if not name:
        name = path.absolute().parent.name
    name = re.sub(r"[^\w.+-]", "_", name).strip("_.+-")
    return name or "file"


def check_value(f, value: Any) -> None:
    """UserError `--flag must be RULE, got VALUE` when `value` breaks field f's rule/choices."""
    if value is None:
        return
    choices, rule = f.metadata.get("choices"), f.metadata.get("rule")
    if choices and value not in choices:
        raise UserError(f"unknown {f.name} {value!r}: choose one of {', '.join(choices)}")
    if rule is None:
        return
    flag = flag_of(f)
    if rule.finite and not math.isfinite(value):
        raise UserError(f"{flag} must be a finite number, got {value}")
    if not rule.test(value):
        raise UserError(f"{flag} must be {rule.text}, got {value}")


def _known(cls, values: dict) -> dict:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in values.items() if k in names}


# --------------------------------------------------------------------------------------------
# Saved files of versions before 1.0: read here, and only here

# the method keys those versions wrote: `norm` (a name, or isobn-legacy) and the IsoBN
# parameters, which applied to an IsoBN norm only
_OLD_METHOD_KEYS = ("norm", "isobn_beta", "isobn_momentum", "isobn_correlation")
_OLD_NORMS = {"isobn-legacy": "isobn:bias_correction=false"}
_OLD_ISOBN_PARAMS = {
    "isobn_beta": "beta",
    "isobn_momentum": "momentum",
    "isobn_correlation": "use_correlation",
}


def _old_method(old: dict) -> str:
    """The canonical method spec of a saved file's old method keys, e.g. {"norm":
    "isobn-legacy", "isobn_beta": 0.25} -> isobn:beta=0.25,bias_correction=false."""
    norm = old.get("norm") or "isobn"
    spec = parse_method(_OLD_NORMS.get(norm, norm), "norm")
    params = {
        param: old[key] for key, param in _OLD_ISOBN_PARAMS.items() if old.get(key) is not None
    }
    if spec.norm.name != "isobn" or not params:
        return str(spec)
    merged = {**spec.norm.kwargs, **params}
    return canonical("isobn:" + ",".join(f"{k}={_spec_value(v)}" for k, v in merged.items()))


def _spec_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "none" if value is None else repr(value)


def migrate_config(values: dict) -> dict:
    """A config.json / isobn_model.json / study cell `config` dict in today's keys: the method
    keys of versions before 1.0 fold into `method` (where it is missing or null); a run on
    files drops the task it ignored."""
    values = dict(values)
    old = {key: values.pop(key) for key in _OLD_METHOD_KEYS if key in values}
    if old and not values.get("method"):
        values["method"] = _old_method(old)
    if values.get("train_file"):
        values["task"] = values["data_dir"] = None  # earlier versions ignored them silently
    return values


def saved_settings(values: dict) -> dict:
    """Every setting of a saved config (config.json, a study cell record's `config`) of any
    version, in today's keys. A setting it lacks is at its default: a setting is added with
    the earlier behaviour as its default (adam_epsilon, drop_last), so that is what the run
    used."""
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    return {**defaults, **migrate_config(values)}


def method_of(config: dict) -> str:
    """The canonical method of a run's config.json or metrics.json, of any version."""
    if config.get("method"):
        return canonical(config["method"])
    return migrate_config(config).get("method") or "isobn"
