"""Help texts are written once, where the setting is defined: no two commands describe one
option differently, every option has a help text, and an option written with a Hugging Face
(TrainingArguments / run_glue.py) name is answered with isobn's."""

from __future__ import annotations

import re

import pytest

from isobn.cli.main import build_parser, main

DEFAULT = re.compile(r"\s*\(default[^()]*\)$")  # a command's own default may differ


def option_helps() -> dict[str, dict[str, str]]:
    """option -> command -> its help text without the `(default ...)` suffix."""
    helps: dict[str, dict[str, str]] = {}
    for command, parser in build_parser().commands.items():
        for action in parser._actions:
            for option in action.option_strings:
                helps.setdefault(option, {})[command] = DEFAULT.sub("", action.help or "")
    return helps


def test_no_two_commands_describe_one_option_differently():
    differing = {
        option: by_command
        for option, by_command in option_helps().items()
        if len(set(by_command.values())) > 1
    }
    assert differing == {}
    shared = [option for option, by_command in option_helps().items() if len(by_command) > 1]
    assert {"--out", "--batch-size", "--seed", "--max-length", "--trust-remote-code"} <= set(shared)


def test_every_option_has_a_help_text():
    missing = [
        f"{command} {option}"
        for option, by_command in option_helps().items()
        for command, text in by_command.items()
        if not text.strip()
    ]
    assert missing == []


def command_help(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return capsys.readouterr().out


def test_help_names_todays_options_and_defaults(capsys):
    assert "--norm" not in command_help("demo", capsys)
    assert "(default 1,2,3,4,5)" in command_help("experiment", capsys)
    analyze = " ".join(command_help("analyze", capsys).split())
    assert "MSE loss, " not in analyze and "early stopping" not in analyze


def error_of(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    return err


@pytest.mark.parametrize(
    ("command", "given", "ours"),
    [
        ("train", "--learning_rate", "did you mean --lr?"),
        ("train", "--num_train_epochs", "did you mean --epochs?"),
        ("train", "--per_device_train_batch_size", "did you mean --batch-size?"),
        ("train", "--per_device_eval_batch_size", "did you mean --eval-batch-size?"),
        ("analyze", "--per_device_eval_batch_size", "did you mean --batch-size?"),
        ("train", "--max_seq_length", "did you mean --max-length?"),
        ("train", "--weight_decay", "did you mean --weight-decay?"),
        ("train", "--warmup_ratio", "did you mean --warmup-ratio?"),
        ("train", "--gradient_accumulation_steps", "did you mean --grad-accum?"),
        ("experiment", "--seed", "did you mean --seeds?"),
        ("predict", "--output_dir", "did you mean --output?"),
        ("train", "--do_train", "isobn has no --do_train"),
        ("train", "--overwrite_output_dir", "isobn has no --overwrite_output_dir"),
    ],
)
def test_hugging_face_names_get_isobns(command, given, ours, capsys):
    argv = [command, given, "1", "--out", "o", "--checkpoint", "c", "--input", "i"]
    if command != "predict":
        argv = [command, given, "1", "--out", "o"]
    assert ours in error_of(argv, capsys)


def test_required_options_given_with_hugging_face_names(capsys):
    err = error_of(["train", "--model_name_or_path", "bert", "--output_dir", "o"], capsys)
    assert "the following arguments are required: --out" in err
    assert "did you mean --model for --model_name_or_path, --out for --output_dir?" in err
