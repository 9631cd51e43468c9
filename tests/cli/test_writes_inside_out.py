"""The property behind --out: every file a command writes lies inside its output path.

For each command that writes a directory, hypothesis plants symbolic links inside --out at
names the command writes (log.jsonl, config.json, study.toml, a cell's lock, the result
tables, best/, ...), each pointing at a file or folder outside, and draws names that would
escape (`../escaped`, `/abs`). The command must end with exit 0, or exit 2 and one error
line, and the file tree outside --out (the inputs, the model, the link targets) must be byte
for byte and name for name what it was: nothing is written through a link, nothing created
outside. Derandomized: the same 19 cases every run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import QUICK_ARGS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_never_traceback import check_command

pytestmark = pytest.mark.slow

SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PRECIOUS = "precious: not isobn's to write\n"
RUN_NAMES = ["config.json", "log.jsonl", "metrics.json", "best", "last", "best.old", "last.tmp"]


def tree(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Every entry under `root` (but `skip`), links not followed: a file by its bytes' hash,
    a link by its target, a folder by its name."""
    entries = {}
    for folder, dirs, files in os.walk(root):
        folder = Path(folder)
        if skip is not None and (folder == skip or skip in folder.parents):
            dirs[:] = []
            continue
        for name in dirs + files:
            path = folder / name
            if skip is not None and path == skip:
                continue
            key = str(path.relative_to(root))
            if path.is_symlink():
                entries[key] = "link -> " + os.readlink(path)
            elif path.is_file():
                entries[key] = hashlib.sha1(path.read_bytes()).hexdigest()
            else:
                entries[key] = "folder"
    return entries


def plant(out: Path, names: list[str], outside: Path) -> None:
    """A link at each name inside `out`: to the precious file, or for a folder's name
    (best, last, ...) to a folder outside."""
    for name in names:
        link = out / name
        link.parent.mkdir(parents=True, exist_ok=True)
        folder = "." not in name or name.endswith((".old", ".tmp"))
        link.symlink_to(outside / ("folder" if folder else "precious.txt"))


def outside_of(tmp: Path) -> Path:
    outside = tmp / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "folder" / "kept.txt").write_text(PRECIOUS)
    (outside / "precious.txt").write_text(PRECIOUS)
    return outside


def check_nothing_outside(argv: list[str], tmp: Path, out: Path, also: list[Path]) -> int:
    """Run the command; the tree of `tmp` outside `out`, and of `also`, is unchanged."""
    before = [tree(tmp, skip=out), *(tree(p) for p in also)]
    code = check_command(argv)
    after = [tree(tmp, skip=out), *(tree(p) for p in also)]
    assert after == before, (argv, "a file outside the output path changed")
    for path in (tmp / "outside" / "precious.txt", tmp / "outside" / "folder" / "kept.txt"):
        assert path.read_text() == PRECIOUS, argv
    return code


def data_copy(files: dict[str, str], tmp: Path) -> dict[str, str]:
    (tmp / "data").mkdir()
    return {k: str(shutil.copy(v, tmp / "data" / Path(v).name)) for k, v in files.items()}


@settings(max_examples=5, **SETTINGS)
@given(names=st.lists(st.sampled_from(RUN_NAMES), min_size=1, max_size=3, unique=True))
def test_train_writes_only_inside_out(tmp_path_factory, tiny_bert, sentiment_files, names):
    tmp = tmp_path_factory.mktemp("train")
    outside, files = outside_of(tmp), data_copy(sentiment_files, tmp)
    out = tmp / "out"
    plant(out, names, outside)
    argv = ["train", "--model", tiny_bert, "--train", files["train"], "--dev", files["dev"]]
    argv += ["--out", str(out), "--pooling", "cls", "--max-train", "24", *QUICK_ARGS]
    check_nothing_outside(argv, tmp, out, [Path(tiny_bert)])


EXPERIMENT_NAMES = ["results.md", "results.csv", "results.json"] + [
    f"sentiment/none/seed1/{name}" for name in ("log.jsonl", "config.json", "best")
]


@settings(max_examples=3, **SETTINGS)
@given(
    names=st.lists(st.sampled_from(EXPERIMENT_NAMES), min_size=1, max_size=3, unique=True),
    data_name=st.sampled_from(["sentiment", "sentiment", "../escaped", "a/b"]),
)
def test_experiment_writes_only_inside_out(
    tmp_path_factory, tiny_bert, sentiment_files, names, data_name
):
    tmp = tmp_path_factory.mktemp("experiment")
    outside, files = outside_of(tmp), data_copy(sentiment_files, tmp)
    out = tmp / "out"
    plant(out, names, outside)
    argv = ["experiment", "--model", tiny_bert, "--train", files["train"], "--dev", files["dev"]]
    argv += ["--out", str(out), "--methods", "none", "--seeds", "1", "--name", data_name]
    argv += ["--pooling", "cls", "--max-train", "24", *QUICK_ARGS]
    check_nothing_outside(argv, tmp, out, [Path(tiny_bert)])


STUDY = """[study]
name = "{name}"
model = "{model}"
[train]
epochs = 1
batch_size = 16
max_length = 24
isotropy_examples = 16
pooling = "cls"
[tasks.{task}]
train_file = "{train}"
dev_file = "{dev}"
[[block]]
name = "main"
tasks = [{task}]
sizes = [24]
methods = ["none"]
seeds = [1]
"""
STUDY_NAMES = [
    "study.toml",
    "sessions.jsonl",
    "locks/study.lock",
    "locks/sent/n24/none/seed1.lock",
    "cells/sent/n24/none/seed1.json.tmp",
    "runs/sent/n24/none/seed1/log.jsonl",
    "runs/sent/n24/none/seed1/config.json",
    "results.json",
    "results.csv",
    "RESULTS.md",
    "pretrained_isotropy.json",
]


@settings(max_examples=4, **SETTINGS)
@given(
    names=st.lists(st.sampled_from(STUDY_NAMES), max_size=3, unique=True),
    task=st.sampled_from(['"sent"', '"sent"', '"../../escaped"', '"/abs"', '""', '"a|b"']),
    name=st.sampled_from(["tiny", "tiny", "x|y"]),
)
def test_study_writes_only_inside_out(
    tmp_path_factory, tiny_bert, sentiment_files, names, task, name
):
    tmp = tmp_path_factory.mktemp("study")
    outside, files = outside_of(tmp), data_copy(sentiment_files, tmp)
    out = tmp / "nested" / "out"
    out.parent.mkdir()  # so that the command creates nothing outside --out: --out itself
    plant(out, names, outside)
    path = tmp / "study.toml"
    path.write_text(
        STUDY.format(name=name, model=tiny_bert, task=task, train=files["train"], dev=files["dev"])
    )
    argv = ["study", str(path), "--out", str(out)]
    code = check_nothing_outside(argv, tmp, out, [Path(tiny_bert)])
    if task != '"sent"' or name != "tiny":
        assert code == 2  # a name that is not an identifier
    if code == 0:
        results = json.loads((out / "results.json").read_text())
        assert [c["task"] for c in results["cells"]] == ["sent"]


@settings(max_examples=2, **SETTINGS)
@given(
    names=st.lists(
        st.sampled_from(["isotropy.json", "report.md", "std_histogram.png", "correlation.png"]),
        min_size=1,
        max_size=2,
        unique=True,
    )
)
def test_analyze_writes_only_inside_out(tmp_path_factory, tiny_bert, sentiment_files, names):
    tmp = tmp_path_factory.mktemp("analyze")
    outside, files = outside_of(tmp), data_copy(sentiment_files, tmp)
    out = tmp / "out"
    plant(out, names, outside)
    argv = ["analyze", "--model", tiny_bert, "--train", files["train"], "--dev", files["dev"]]
    argv += ["--split", "dev", "--out", str(out), "--max-eval", "24"]
    check_nothing_outside(argv, tmp, out, [Path(tiny_bert)])


@settings(max_examples=2, **SETTINGS)
@given(
    names=st.lists(
        st.sampled_from(["results.md", "results.csv", "results.json", "figures"]),
        min_size=1,
        max_size=2,
        unique=True,
    )
)
def test_report_writes_only_inside_its_directory(tmp_path_factory, trained_run, names):
    tmp = tmp_path_factory.mktemp("report")
    outside = outside_of(tmp)
    out = tmp / "exp"
    shutil.copytree(trained_run, out / "sentiment" / "isobn" / "seed3")
    plant(out, names, outside)
    check_nothing_outside(["report", str(out)], tmp, out, [])


@settings(max_examples=3, **SETTINGS)
@given(planted=st.sampled_from(["none", "output_is_a_loop", "output_in_a_loop"]))
def test_predict_writes_only_its_output(tmp_path_factory, trained_run, planted):
    tmp = tmp_path_factory.mktemp("predict")
    outside_of(tmp)
    out = tmp / "out"
    out.mkdir()
    source = tmp / "input.txt"
    source.write_text("good movie\nbad plot\n")
    output = out / "p.jsonl"
    if planted == "output_is_a_loop":
        output.symlink_to(output)
    elif planted == "output_in_a_loop":
        (out / "loop").symlink_to(out / "loop")
        output = out / "loop" / "p.jsonl"
    argv = ["predict", "--checkpoint", str(trained_run), "--input", str(source)]
    code = check_nothing_outside([*argv, "--output", str(output)], tmp, out, [trained_run])
    assert code == (0 if planted == "none" else 2)
