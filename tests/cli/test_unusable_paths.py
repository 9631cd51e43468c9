"""Paths no file system call can use (a component over 255 bytes, a symbolic link loop) are
one line and exit 2 for every path option of every command, before any work."""

from __future__ import annotations

import contextlib
import io
import os
import signal
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


def write_study(path: Path, model: str, train: str, dev: str) -> Path:
    """A one-cell study file at `path`: task `sent` of the `train` and `dev` files."""
    path.write_text(
        f'[study]\nmodel = "{model}"\n[tasks.sent]\ntrain_file = "{train}"\n'
        f'dev_file = "{dev}"\n[[block]]\ntasks = ["sent"]\nsizes = [24]\n'
        'methods = ["none"]\nseeds = [1]\n'
    )
    return path


def commands(tmp: Path, bad: str, model: str, files: dict, run: str) -> dict[str, list[str]]:
    """Each command with one path option set to `bad`, the others good."""
    good_out = str(tmp / "out")
    study = write_study(tmp / "s.toml", model, files["train"], files["dev"])
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
    study = write_study(tmp_path / "s.toml", tiny_bert, str(tmp_path / LONG), "d.csv")
    line = error_line(["study", str(study), "--out", str(tmp_path / "out")])
    assert "[tasks.sent] train_file: the path component" in line


# The odd things a path option may name instead of what it wants: each is one line saying what
# stands there (a directory given for a data file said "file not found"; a named pipe made a
# run wait forever for a writer; a broken link was "not found" or "does not exist").
FILE_OPTIONS = ["train --train", "train --dev", "train --test", "experiment --train",
                "analyze --train", "predict --input", "study file", "study train_file"]  # fmt: skip
DIRECTORY_OPTIONS = ["train --model", "train --data-dir", "experiment --model",
                     "analyze --model", "analyze --compare", "predict --checkpoint",
                     "export RUN", "report"]  # fmt: skip


def input_commands(tmp: Path, bad: str, model: str, files: dict, run: str) -> dict[str, list]:
    """Each command with one input path option set to `bad`, the others good."""
    out = str(tmp / "out")
    study = write_study(tmp / "bad-task.toml", model, bad, files["dev"])
    data = ["--train", files["train"], "--dev", files["dev"]]
    return {
        "train --train": ["train", "--model", model, "--train", bad, "--dev", files["dev"],
                          "--out", out],
        "train --dev": ["train", "--model", model, "--train", files["train"], "--dev", bad,
                        "--out", out],
        "train --test": ["train", "--model", model, *data, "--test", bad, "--out", out],
        "experiment --train": ["experiment", "--model", model, "--train", bad, "--dev",
                               files["dev"], "--out", out],
        "analyze --train": ["analyze", "--model", model, "--train", bad, "--dev", files["dev"],
                            "--out", out],
        "predict --input": ["predict", "--checkpoint", run, "--input", bad],
        "study file": ["study", bad, "--out", out],
        "study train_file": ["study", str(study), "--out", out],
        "train --model": ["train", "--model", bad, *data, "--out", out],
        "train --data-dir": ["train", "--task", "sst2", "--data-dir", bad, "--model", model,
                             "--out", out],
        "experiment --model": ["experiment", "--model", bad, *data, "--out", out],
        "analyze --model": ["analyze", "--model", bad, *data, "--out", out],
        "analyze --compare": ["analyze", "--compare", f"a={bad}", *data, "--out", out],
        "predict --checkpoint": ["predict", "--checkpoint", bad, "--input", files["dev"]],
        "export RUN": ["export", bad, "--out", out],
        "report": ["report", bad],
    }  # fmt: skip


def _odd_path(tmp: Path, kind: str) -> Path:
    """A path of `kind` under `tmp`: a directory, a regular file, a named pipe, a broken link."""
    path = tmp / f"odd-{kind}.csv"
    if kind == "directory":
        path.mkdir()
    elif kind == "file":
        path.write_text("text,label\ngood,pos\n")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(tmp / "nowhere" / "data.csv")
    return path


def _file_kind_said(kind: str, path: Path, case: str) -> str:
    if kind == "directory":
        return f"{path} is a directory, not " + ("a study file" if case == "study file" else
                                                   "a data file")  # fmt: skip
    if kind == "fifo":
        return f"{path} is a named pipe (FIFO), not a" + (" study file" if case == "study file"
                                                          else " regular file")  # fmt: skip
    return (
        f"{path} is a symbolic link to {path.parent / 'nowhere' / 'data.csv'}, which does not exist"
    )


@contextlib.contextmanager
def no_hang(seconds: int = 120):
    """Fail instead of waiting forever (opening a named pipe waits for a writer)."""

    def stop(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: waiting on a named pipe?")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("kind", ["directory", "fifo", "broken-link"])
@pytest.mark.parametrize("case", FILE_OPTIONS)
def test_a_file_option_naming_an_odd_path_says_what_stands_there(
    tmp_path, tiny_bert, sentiment_files, trained_run, case, kind
):
    if case == "predict --input" and kind == "fifo":
        pytest.skip("predict reads its input once: a pipe is fine there (--input /dev/stdin)")
    bad = _odd_path(tmp_path, kind)
    argv = input_commands(tmp_path, str(bad), tiny_bert, sentiment_files, str(trained_run))[case]
    with no_hang():
        line = error_line(argv)
    assert _file_kind_said(kind, bad, case) in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["file", "fifo", "broken-link"])
@pytest.mark.parametrize("case", DIRECTORY_OPTIONS)
def test_a_directory_option_naming_an_odd_path_says_what_stands_there(
    tmp_path, tiny_bert, sentiment_files, trained_run, case, kind
):
    bad = _odd_path(tmp_path, kind)
    argv = input_commands(tmp_path, str(bad), tiny_bert, sentiment_files, str(trained_run))[case]
    with no_hang():
        line = error_line(argv)
    said = {
        "file": f"{bad} is a file",
        "fifo": f"{bad} is a named pipe (FIFO)",
        "broken-link": f"{bad} is a symbolic link to {tmp_path / 'nowhere' / 'data.csv'}, "
        "which does not exist",
    }[kind]
    assert said in line, line
    assert f"{bad} does not exist" not in line and "not found" not in line, line
    assert not (tmp_path / "out").exists()


UNREADABLE_SCRIPT = """
import contextlib, io, json, sys
from isobn.cli.main import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except BaseException as error:  # a traceback: reported, not raised
            code, err = -1, io.StringIO(repr(error))
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""


def run_unprivileged(argvs: list[list[str]], probe: Path) -> list[tuple[int, str]]:
    """`isobn ARGV` for each of `argvs` in one process that file permissions bind: as root,
    without the capabilities that let root read anything (setpriv); skipped where that
    cannot be had (`probe`, a file of mode 000, is still readable)."""
    import json
    import shutil
    import subprocess
    import sys

    prefix = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: permissions do not apply")
        prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search",
                  "--inh-caps", "-all"]  # fmt: skip
        readable = subprocess.run([*prefix, "cat", str(probe)], capture_output=True)
        if readable.returncode == 0:
            pytest.skip("root reads files of mode 000 here: permissions do not apply")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    done = subprocess.run(
        [*prefix, sys.executable, "-c", UNREADABLE_SCRIPT, json.dumps(argvs)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [tuple(result) for result in json.loads(done.stdout.splitlines()[-1])]


def test_unreadable_inputs_are_one_line_naming_the_permission(
    tmp_path, tiny_bert, sentiment_files, trained_run
):
    """A data file, a model or run directory, a file inside one this user may not read: one
    line that says so. Before: tracebacks (analyze --model, predict --checkpoint, export,
    --data-dir on an unreadable directory), a damaged file (an unreadable config.json or
    isobn_model.json), "no config.json" or "no finished runs" (an unreadable directory)."""
    import shutil

    locked_file = tmp_path / "locked.csv"
    shutil.copy(sentiment_files["train"], locked_file)
    locked_model = Path(shutil.copytree(tiny_bert, tmp_path / "locked-model"))
    hidden_config = Path(shutil.copytree(tiny_bert, tmp_path / "hidden-config"))
    locked_run = Path(shutil.copytree(trained_run, tmp_path / "locked-run"))
    hidden_run = Path(shutil.copytree(trained_run, tmp_path / "hidden-run"))
    experiment = tmp_path / "experiment"
    shutil.copytree(trained_run, experiment / "run")
    for path in (locked_file, hidden_config / "config.json", hidden_run / "best" /
                 "isobn_model.json", experiment / "run" / "metrics.json"):  # fmt: skip
        path.chmod(0)
    for path in (locked_model, locked_run):
        path.chmod(0)
    data = ["--train", sentiment_files["train"], "--dev", sentiment_files["dev"]]
    out = str(tmp_path / "out")
    cases = {
        "train --train": (["train", "--model", tiny_bert, "--train", str(locked_file), "--dev",
                           sentiment_files["dev"], "--out", out],
                          f"cannot read {locked_file} (permission denied); check its permissions"),
        "train --model": (["train", "--model", str(locked_model), *data, "--out", out],
                          f"cannot read model directory {locked_model} (permission denied)"),
        "train --model config.json": (["train", "--model", str(hidden_config), *data, "--out",
                                       out], f"cannot read {hidden_config / 'config.json'} "
                                       "(permission denied); check its permissions"),
        "analyze --model": (["analyze", "--model", str(locked_model), *data, "--out", out],
                            f"cannot read model directory {locked_model} (permission denied)"),
        "predict --checkpoint": (["predict", "--checkpoint", str(locked_run), "--input",
                                  sentiment_files["dev"]],
                                 f"--checkpoint {locked_run} cannot be read (permission denied)"),
        "predict isobn_model.json": (["predict", "--checkpoint", str(hidden_run), "--input",
                                      sentiment_files["dev"]],
                                     f"cannot read {hidden_run / 'best' / 'isobn_model.json'} "
                                     "(permission denied)"),
        "export RUN": (["export", str(locked_run), "--out", out],
                       f"{locked_run} cannot be read (permission denied)"),
        "report": (["report", str(experiment)],
                   f"cannot read {experiment / 'run' / 'metrics.json'} (permission denied)"),
        "train --data-dir": (["train", "--task", "sst2", "--data-dir", str(locked_model),
                              "--model", tiny_bert, "--out", out],
                             f"--data-dir {locked_model} cannot be read (permission denied)"),
    }  # fmt: skip
    try:
        results = run_unprivileged([argv for argv, _ in cases.values()], locked_file)
    finally:
        for path in (locked_model, locked_run):
            path.chmod(0o755)  # so that pytest can remove them
    for (case, (_, said)), (code, err) in zip(cases.items(), results, strict=True):
        lines = [line for line in err.splitlines() if "error:" in line]
        assert code == 2 and "Traceback" not in err and len(lines) == 1, (case, code, err)
        assert said in lines[0], (case, lines[0])
        assert "damaged" not in lines[0], (case, lines[0])
    assert not Path(out).exists()
