"""A full disk (ENOSPC) or a used-up quota (EDQUOT) while any command writes: one line
`no space left on DEVICE writing PATH: free space or choose another --out`, exit 2, no
temporary file left, finished work as it was, and a run that can be continued.

The disk is simulated (tests/full_disk.py: each write below the output folder draws on a
byte budget), so CI runs these anywhere; the last test repeats one on a real tmpfs of 64 KiB
where this process may mount one."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from full_disk import fills_after, leftovers

from isobn.cli.main import main
from isobn.errors import UserError
from isobn.training import checkpoint as ckpt
from isobn.training.disk_full import DiskFullError, disk_full_problem, file_system_of
from isobn.training.safe_files import all_or_none, append_line, write_atomically

LINE = re.compile(
    r"isobn (\w+): error: no space left on (/\S*)( \([^)]*\))? writing (\S+): "
    r"free space( or choose another (--out|--output))?$"
)


def run(argv: list[str]) -> tuple[int, list[str]]:
    """`isobn ARGV` in this process: (exit code, the error lines on stderr)."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    text = stderr.getvalue()
    assert "Traceback" not in text, text
    return code, [line for line in text.replace("\r", "\n").splitlines() if "error:" in line]


def full_disk_line(lines: list[str], inside: Path) -> re.Match:
    """The one error line, of the full disk, naming a file below `inside`."""
    assert len(lines) == 1, lines
    match = LINE.match(lines[0])
    assert match, lines[0]
    assert Path(match.group(4)).resolve().is_relative_to(inside.resolve()), lines[0]
    return match


def files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


# --------------------------------------------------------------------------------------------
# The pieces: the errors that say "full disk", the device, and the writers' clean-up


def test_a_full_disk_is_recognised_however_a_library_words_it():
    from safetensors import SafetensorError

    assert disk_full_problem(OSError(errno.ENOSPC, "No space left on device"), "x") is not None
    quota = disk_full_problem(OSError(errno.EDQUOT, "Disk quota exceeded", "f"), "x")
    assert quota.code == errno.EDQUOT and "disk quota exceeded) writing f:" in str(quota)
    worded = SafetensorError("Error while serializing: I/O error: No space (os error 28)")
    assert disk_full_problem(worded, "out/best").path == "out/best"
    for hide in (False, True):  # PIL: another error while closing; or one raised from None
        try:
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError as error:
                raise (ValueError("closed file") if hide else AttributeError("fileno")) from (
                    None if hide else error
                )
        except (ValueError, AttributeError) as chained:
            assert disk_full_problem(chained, "a.png").path == "a.png"
    assert disk_full_problem(OSError(errno.EACCES, "Permission denied"), "x") is None
    assert disk_full_problem(ValueError("os error 2"), "x") is None


def test_the_device_is_the_mount_of_the_nearest_existing_folder(tmp_path):
    point, _ = file_system_of(tmp_path / "not" / "yet")
    assert Path(tmp_path).resolve().is_relative_to(point)
    message = str(DiskFullError(tmp_path / "a" / "b.json"))
    assert message.startswith(f"no space left on {point}")
    assert message.endswith(
        f"writing {tmp_path / 'a' / 'b.json'}: free space or choose another --out"
    )


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")
    with fills_after(tmp_path, 10), pytest.raises(DiskFullError) as error:
        write_atomically(path, "x" * 100)
    assert error.value.path == path
    assert path.read_text() == "old" and leftovers(tmp_path) == []


def test_a_failed_append_is_cut_off_again(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1}\n')
    with fills_after(tmp_path, 5), pytest.raises(DiskFullError):
        append_line(log, json.dumps({"step": 2, "loss": 0.5}))
    assert log.read_text() == '{"step": 1}\n'


def test_a_failed_checkpoint_leaves_the_old_one_and_no_temporary_folder(tmp_path):
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "model.safetensors").write_text("old")

    def write(tmp: Path) -> None:
        (tmp / "model.safetensors").write_bytes(b"x" * 1000)

    with fills_after(tmp_path, 100), pytest.raises(DiskFullError) as error:
        ckpt.write_directory_atomically(tmp_path / "best", write)
    assert error.value.path == tmp_path / "best"
    assert files(tmp_path) == {"best/model.safetensors": b"old"}


def test_a_failed_checkpoint_names_its_file_as_it_would_be_not_the_temporary(tmp_path):
    """A writer inside the temporary folder names its own file (best.tmp/isobn_model.json);
    the line names it in best/ (it named the temporary folder, gone by then)."""

    def write(tmp: Path) -> None:
        write_atomically(tmp / "isobn_model.json", "x" * 1000)

    with fills_after(tmp_path, 100), pytest.raises(DiskFullError) as error:
        ckpt.write_directory_atomically(tmp_path / "best", write)
    assert error.value.path == tmp_path / "best" / "isobn_model.json"
    assert ".tmp" not in str(error.value) and leftovers(tmp_path) == []


def test_a_study_session_stopped_by_a_full_disk_names_the_file_that_did_not_fit(tmp_path):
    """The session's end line in sessions.jsonl does not fit either: the error is still the
    one of the file that stopped the session (it named sessions.jsonl)."""
    from isobn.study.runner import run_session
    from isobn.study.spec import parse_study

    study = parse_study(STUDY.format(model="m", train="t.csv", dev="d.csv"), tmp_path / "s.toml")
    out = tmp_path / "out"
    out.mkdir()

    def body(progress) -> None:
        write_atomically(out / "cells" / "record.json", "x" * 10_000)

    (out / "cells").mkdir()
    with fills_after(out, 1000), pytest.raises(DiskFullError) as error:
        run_session(study, out, body, {"jobs": 1})
    assert error.value.path == out / "cells" / "record.json"
    lines = (out / "sessions.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["jobs"] == 1  # the start line, whole


def test_files_written_together_are_all_replaced_or_none(tmp_path):
    for name in ("a.json", "b.png", "report.md"):
        (tmp_path / name).write_text("old")
    with fills_after(tmp_path, 150), pytest.raises(DiskFullError):
        with all_or_none():
            for name in ("a.json", "b.png", "report.md"):
                write_atomically(tmp_path / name, "new" * 30)  # the third does not fit
    assert files(tmp_path) == {n: b"old" for n in ("a.json", "b.png", "report.md")}
    with all_or_none():
        for name in ("a.json", "b.png"):
            write_atomically(tmp_path / name, "new")
    assert files(tmp_path)["a.json"] == b"new" == files(tmp_path)["b.png"]
    with pytest.raises(UserError), all_or_none():  # any error: the old files stay
        write_atomically(tmp_path / "a.json", "newer")
        raise UserError("bad input")
    assert files(tmp_path)["a.json"] == b"new" and leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------
# The commands


def train_argv(tiny_bert, sentiment_files, out: Path) -> list[str]:
    return [
        "train",
        "--model",
        tiny_bert,
        "--train",
        sentiment_files["train"],
        "--dev",
        sentiment_files["dev"],
        "--test",
        sentiment_files["test"],
        "--out",
        str(out),
        "--pooling",
        "cls",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--max-length",
        "32",
        "--eval-every-steps",
        "3",
    ]


@pytest.mark.slow
def test_train_on_a_disk_that_fills_up_stops_in_one_line_and_resumes(
    tmp_path, tiny_bert, sentiment_files
):
    """The disk fills at several points of a run (the config, the log, best/, last/,
    metrics.json); each time one line, no temporary file, and the same command with
    --resume, given space, finishes the run."""
    whole = tmp_path / "whole"
    with fills_after(whole, float("inf")) as disk:
        assert run(train_argv(tiny_bert, sentiment_files, whole))[0] == 0
    total = disk.written
    for fraction in (0.0, 0.002, 0.2, 0.6, 0.97):
        out = tmp_path / f"at{fraction}"
        argv = train_argv(tiny_bert, sentiment_files, out)
        with fills_after(out, int(total * fraction)) as disk:
            code, lines = run(argv)
        assert code == 2 and disk.failures, fraction
        match = full_disk_line(lines, out)
        assert match.group(6) == "--out"
        assert leftovers(out) == [], fraction
        assert run([*argv, "--resume"]) == (0, []), fraction
        assert (out / "metrics.json").is_file() and leftovers(out) == []


@pytest.mark.slow
def test_a_finished_run_stays_as_it_was(trained_run, tmp_path, tiny_bert, sentiment_files):
    from test_never_traceback import trained_run_argv

    out = tmp_path / "run"
    shutil.copytree(trained_run, out)
    before = files(out)
    with fills_after(tmp_path, 0):
        assert run([*trained_run_argv(tiny_bert, sentiment_files, out), "--resume"])[0] == 0
        code, lines = run(["report", str(tmp_path)])  # results.* beside the runs
    assert code == 2
    assert full_disk_line(lines, tmp_path).group(5) is None  # report has no --out: free space
    assert files(out) == before and leftovers(tmp_path) == []


@pytest.mark.slow
def test_report_replaces_its_tables_and_figures_together(tmp_path, trained_run, pooler_run):
    """`isobn report` on a disk that fills while it draws a figure leaves the earlier tables
    and figures as they were (it had replaced the tables, beside the earlier figures)."""
    pytest.importorskip("matplotlib")
    directory = tmp_path / "exp"
    shutil.copytree(trained_run, directory / "a")
    assert run(["report", str(directory)])[0] == 0
    shutil.copytree(pooler_run, directory / "b")  # one run more: every file of the report changes
    for name in ("config.json", "metrics.json"):  # as seed 4 (pooler_run is seed 3 too)
        path = directory / "b" / name
        path.write_text(path.read_text().replace('"seed": 3', '"seed": 4'))
    measured = tmp_path / "measured"
    shutil.copytree(directory, measured)
    with fills_after(measured, float("inf")) as disk:
        assert run(["report", str(measured)])[0] == 0
    before = files(directory)
    assert {"results.json", "figures/learning_curves.png"} <= set(before)
    for budget in (disk.written // 2, disk.written - 1):  # in the first figure, in the last
        with fills_after(directory, budget):
            code, lines = run(["report", str(directory)])
        assert code == 2 and "figures" in full_disk_line(lines, directory).group(4), budget
        assert files(directory) == before and leftovers(directory) == [], budget


STUDY = """[study]
name = "full"
model = "{model}"
[train]
epochs = 1
isotropy_examples = 16
[tasks.sent]
train_file = "{train}"
dev_file = "{dev}"
[[block]]
name = "main"
tasks = ["sent"]
sizes = [24]
methods = ["none", "isobn"]
seeds = [1]
"""


@pytest.mark.slow
def test_a_study_and_its_report_on_a_full_disk(tmp_path, tiny_bert, sentiment_files):
    path = tmp_path / "s.toml"
    files_ = sentiment_files
    path.write_text(STUDY.format(model=tiny_bert, train=files_["train"], dev=files_["dev"]))
    out = tmp_path / "out"
    argv = ["study", str(path), "--out", str(out)]
    with fills_after(out, 3000) as disk:
        code, lines = run(argv)
    assert code == 2 and disk.failures
    first = full_disk_line(lines, out).group(4)  # not the session's end line, which fails too
    assert Path(first).parent != out and ".tmp" not in first, first
    assert leftovers(out) == [] and not list(out.glob("cells/**/*.json"))
    assert run(argv)[0] == 0  # space again: the study runs on
    finished = files(out)
    for budget in (0, 100, 2000):
        with fills_after(out, budget):
            code, lines = run([*argv, "--report-only"])
        assert code == 2
        full_disk_line(lines, out)
        assert files(out) == finished and leftovers(out) == [], budget


@pytest.mark.slow
def test_analyze_on_a_full_disk_keeps_the_earlier_analysis(tmp_path, tiny_bert, sentiment_files):
    out = tmp_path / "a"
    argv = ["analyze", "--model", tiny_bert, "--train", sentiment_files["train"]]
    argv += ["--dev", sentiment_files["dev"], "--split", "dev", "--out", str(out)]
    assert run(argv)[0] == 0
    before = files(out)
    assert {"isotropy.json", "report.md"} <= set(before) and len(before) >= 5
    for budget in (0, 20_000, 80_000):
        with fills_after(out, budget):
            code, lines = run([*argv, "--max-examples", "24"])
        assert code == 2, budget
        full_disk_line(lines, out)
        assert files(out) == before and leftovers(out) == [], budget


@pytest.mark.slow
def test_predict_on_a_full_disk(tmp_path, trained_run, capsys):
    source = tmp_path / "in.txt"
    source.write_text("good movie\nbad plot\n" * 200)
    output = tmp_path / "p" / "predictions.jsonl"
    output.parent.mkdir()
    output.write_text("earlier\n")
    argv = ["predict", "--checkpoint", str(trained_run / "best"), "--input", str(source)]
    with fills_after(output.parent, 500):
        code, lines = run([*argv, "--output", str(output)])
    assert code == 2
    assert full_disk_line(lines, output.parent).group(6) == "--output"
    assert output.read_text() == "earlier\n" and leftovers(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "onnx, budget, code",
    [
        (False, 0, errno.ENOSPC),
        (False, 60_000, errno.ENOSPC),  # inside model.safetensors (transformers' writer)
        (False, 60_000, errno.EDQUOT),
        (True, 200_000, errno.ENOSPC),  # inside model.onnx, past the transformers files
    ],
)
def test_export_on_a_full_disk(tmp_path, pooler_run, onnx, budget, code):
    """The export's temporary folder is removed and the standard line names --out (it was
    `no space left on the device of DIR while writing the export`, and a quota not at all)."""
    if onnx:
        pytest.importorskip("onnxscript")
    out = tmp_path / "exported"
    argv = ["export", str(pooler_run), "--out", str(out), *(["--onnx"] if onnx else [])]
    with fills_after(tmp_path, budget, code) as disk:
        status, lines = run(argv)
    assert status == 2 and disk.failures
    match = full_disk_line(lines, tmp_path)
    assert match.group(4) == str(out) and match.group(6) == "--out"
    assert ("disk quota exceeded" in match.group(3)) == (code == errno.EDQUOT)
    assert list(tmp_path.iterdir()) == []  # no export, no temporary folder


def can_mount_tmpfs(directory: Path) -> bool:
    if shutil.which("mount") is None:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(directory)], capture_output=True
    )
    return done.returncode == 0


@pytest.mark.slow
def test_train_on_a_real_full_tmpfs(tmp_path, tiny_bert, sentiment_files):
    """The same on a real file system of 64 KiB (skipped where this process may not mount):
    best/ (about 130 KiB) does not fit."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if not can_mount_tmpfs(disk):
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        out = disk / "run"
        code, lines = run(train_argv(tiny_bert, sentiment_files, out))
        assert code == 2
        match = full_disk_line(lines, out)
        assert match.group(2) == str(disk.resolve()) and match.group(3) == " (tmpfs)"
        assert match.group(4) == str(out / "best")
        assert leftovers(disk) == [] and not (out / "best").exists()
    finally:
        subprocess.run(["umount", str(disk)], check=False)
