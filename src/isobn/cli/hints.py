"""`did you mean` for an unrecognized option: the Hugging Face names people type from
`TrainingArguments` and `run_glue.py`, the spellings isobn dropped before 1.0, and options
close to one of the command's own (`--task` for experiment's `--tasks`)."""

from __future__ import annotations

import difflib
from collections.abc import Collection

# a foreign or dropped option -> isobn's, tried in order (the first whose flag the command
# has), or the reason isobn has none ("isobn has no ...")
RENAMED: dict[str, tuple[str, ...]] = {
    # Hugging Face TrainingArguments / run_glue.py
    "--model_name_or_path": ("--model", "--checkpoint"),
    "--output_dir": ("--out", "--output"),
    "--learning_rate": ("--lr",),
    "--num_train_epochs": ("--epochs",),
    "--per_device_train_batch_size": ("--batch-size",),
    "--per_device_eval_batch_size": ("--eval-batch-size", "--batch-size"),
    "--max_seq_length": ("--max-length",),
    "--weight_decay": ("--weight-decay",),
    "--warmup_ratio": ("--warmup-ratio",),
    "--warmup_steps": ("--warmup-ratio (a share of the steps)",),
    "--adam_epsilon": ("--adam-epsilon",),
    "--max_grad_norm": ("--max-grad-norm",),
    "--gradient_accumulation_steps": ("--grad-accum",),
    "--seed": ("--seeds",),  # experiment; train and analyze have --seed
    "--task_name": ("--task", "--tasks"),
    "--train_file": ("--train",),
    "--validation_file": ("--dev",),
    "--test_file": ("--test",),
    "--fp16": ("--precision fp16",),
    "--bf16": ("--precision bf16",),
    "--no_cuda": ("--cpu",),
    "--use_cpu": ("--cpu",),
    "--eval_steps": ("--eval-every-steps",),
    "--save_steps": ("--save-every-steps",),
    "--logging_steps": ("--log-every-steps",),
    "--early_stopping_patience": ("--patience",),
    "--resume_from_checkpoint": ("--resume",),
    "--report_to": ("--report-to",),
    "--trust_remote_code": ("--trust-remote-code",),
    "--do_train": ("isobn has no --do_train: `isobn train` always trains",),
    "--do_eval": ("isobn has no --do_eval: training evaluates on --dev after every epoch",),
    "--do_predict": ("isobn has no --do_predict: label a file with `isobn predict`",),
    "--overwrite_output_dir": (
        "isobn has no --overwrite_output_dir: it never overwrites a run; choose another --out",
    ),
    "--lr_scheduler_type": ("isobn has no --lr_scheduler_type: the schedule is linear",),
    "--evaluation_strategy": ("--eval-every-steps",),
    "--eval_strategy": ("--eval-every-steps",),
    # spellings of earlier versions
    "--norm": ("--method",),
    "--norms": ("--methods",),
    "--isobn-beta": ("--method isobn:beta=X", "--methods isobn:beta=X"),
    "--isobn-momentum": ("--method isobn:momentum=X", "--methods isobn:momentum=X"),
    "--isobn-no-corr": (
        "--method isobn:use_correlation=false",
        "--methods isobn:use_correlation=false",
    ),
}


def hint(tokens: list[str], ours: Collection[str]) -> str:
    """What to say about the unrecognized `tokens` (`--name`, `--name=value` or values) of a
    command whose options are `ours`: `did you mean --lr?`, `did you mean --model for
    --model_name_or_path, --out for --output_dir?`, `isobn has no --do_train: ...`, or ""."""
    options, notes = [], []
    for token in tokens:
        if not token.startswith("--"):
            continue
        name = token.split("=", 1)[0]
        text = suggestion(name, ours)
        if text is None or text in [t for _, t in notes + options]:
            continue
        (notes if text.startswith("isobn has no") else options).append((name, text))
    parts = [text for _, text in notes]
    if len(options) == 1:
        parts.insert(0, f"did you mean {options[0][1]}?")
    elif options:
        pairs = ", ".join(f"{text} for {name}" for name, text in options)
        parts.insert(0, f"did you mean {pairs}?")
    return "; ".join(parts)


def suggestion(name: str, ours: Collection[str]) -> str | None:
    """isobn's option for the unknown option `name` (`--lr` for --learning_rate), the reason
    isobn has none, or None."""
    for text in RENAMED.get(name, ()):
        if text.startswith("isobn has no") or text.split()[0] in ours:
            return text
    dashed = name.replace("_", "-")
    if dashed in ours:
        return dashed
    close = difflib.get_close_matches(dashed, sorted(ours), n=1, cutoff=0.7)
    return close[0] if close else None
