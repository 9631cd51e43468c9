"""Paths no file system call can use (a component over 255 bytes, a symbolic link loop) are
one line and exit 2 for every path option of every command, before any work."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from isobn.cli.main import main

LONG = "x" * 300


def error_line(argv: list[str]) -> str:
    """The one `isobn CMD: error: ...` line of a command that must exit 2, no traceback."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    text = stderr.getvalue()
    lines = [line for line in text.splitlines() if "error:" in line]
    assert code == 2 and "Traceback" not in text and len(lines) == 1, (argv, code, text)
    assert lines[0].startswith(f"isobn {argv[0]}: error: "), lines
    return lines[0]


def commands(tmp: Path, bad: str, model: str, files: dict, run: str) -> dict[str, list[str]]:
    """Each command with one path option set to `bad`, the others good."""
    good_out = str(tmp / "out")
    study = tmp / "s.toml"
    study.write_text(
        f'[study]\nmodel = "{model}"\n[tasks.sent]\ntrain_file = "{files["train"]}"\n'
        f'dev_file = "{files["dev"]}"\n[[block]]\ntasks = ["sent"]\nsizes = [24]\n'
        'methods = ["none"]\nseeds = [1]\n'
    )
    data = ["--train", files["train"], "--dev", files["dev"]]
    train = ["train", "--model", model, "--out", good_out, *data]
    return {
        "train --out": ["train", "--model", model, *data, "--out", bad],
        "train --train": ["train", "--model", model, "--train", bad, "--dev", files["dev"]]
        + ["--out", good_out],
        "train --dev": ["train", "--model", model, "--train", files["train"], "--dev", bad]
        + ["--out", good_out],
        "train --test": [*train, "--test", bad],
        "train --model": ["train", "--model", bad, *data, "--out", good_out],
        "experiment --out": ["experiment", "--model", model, *data, "--out", bad],
        "study --out": ["study", str(study), "--out", bad],
        "study file": ["study", bad, "--out", good_out],
        "report": ["report", bad],
        "predict --output": ["predict", "--checkpoint", run, "--input", files["dev"]]
        + ["--output", bad],
        "predict --checkpoint": ["predict", "--checkpoint", bad, "--input", files["dev"]],
        "predict --input": ["predict", "--checkpoint", run, "--input", bad],
        "analyze --out": ["analyze", "--model", model, *data, "--out", bad],
        "analyze --compare": ["analyze", "--compare", f"a={bad}", *data, "--out", good_out],
        "demo --out": ["demo", "--out", bad],
        "export --out": ["export", run, "--out", bad],
        "export RUN": ["export", bad, "--out", good_out],
    }


CASES = [
    "train --out",
    "train --train",
    "train --dev",
    "train --test",
    "train --model",
    "experiment --out",
    "study --out",
    "study file",
    "report",
    "predict --output",
    "predict --checkpoint",
    "predict --input",
    "analyze --out",
    "analyze --compare",
    "demo --out",
    "export --out",
    "export RUN",
]


@pytest.mark.parametrize("kind", ["long", "long_parent", "loop", "in_loop"])
@pytest.mark.parametrize("case", CASES)
def test_unusable_paths_are_one_line(tmp_path, tiny_bert, sentiment_files, trained_run, case, kind):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    bad = {
        "long": str(tmp_path / LONG),
        "long_parent": str(tmp_path / LONG / "file.csv"),
        "loop": str(loop),
        "in_loop": str(loop / "file.csv"),
    }[kind]
    argv = commands(tmp_path, bad, tiny_bert, sentiment_files, str(trained_run))[case]
    line = error_line(argv)
    expected = "over the file system's limit of 255" if "long" in kind else "symbolic link loop"
    assert expected in line, line
    assert not (tmp_path / "out").exists()


def test_a_study_file_naming_an_unusable_data_file_is_one_line(tmp_path, tiny_bert):
    study = tmp_path / "s.toml"
    study.write_text(
        f'[study]\nmodel = "{tiny_bert}"\n[tasks.sent]\ntrain_file = "{tmp_path / LONG}"\n'
        'dev_file = "d.csv"\n[[block]]\ntasks = ["sent"]\nsizes = [24]\n'
        'methods = ["none"]\nseeds = [1]\n'
    )
    line = error_line(["study", str(study), "--out", str(tmp_path / "out")])
    assert "[tasks.sent] train_file: the path component" in line
