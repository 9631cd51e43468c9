"""Committed results and documents hold no machine path; the writers behind them write none."""

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# a path that names one machine: a home, a scratch or a system folder, a Windows drive
MACHINE_PATH = re.compile(
    r"(?<![\w.~-])(/work/|/home/|/tmp/|/root/|/Users/|/mnt/|/scratch/|/private/var/|"
    r"/var/folders/|[A-Za-z]:\\\\?[A-Za-z])"
)
SCANNED = ("results", "docs", "README.md", "BENCHMARKS.md", "CHANGELOG.md")
# folders a tool fixes for every machine, which documents name on purpose: Ray's session logs
TOOL_FOLDERS = re.compile(r"/tmp/ray/")


def _committed_files() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--", *SCANNED],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in listed.decode().split("\0") if name]


def _machine_paths(text: str) -> list[str]:
    return [
        line.strip()
        for line in text.splitlines()
        if MACHINE_PATH.search(TOOL_FOLDERS.sub("", line))
    ]


def test_the_pattern_finds_machine_paths_and_spares_relative_ones():
    found = ["--json /root/out/x.json", '"out": "/tmp/offcopy/pretrained/mr"', "C:\\Users\\x"]
    for line in found + ["cd /work/main && make", "/home/me/data.csv"]:
        assert _machine_paths(line), line
    spared = ["runs/quick/isobn", '"out": "pretrained/mr"', "https://example.org/tmp/x"]
    for line in spared + ["Ray's logs are in `/tmp/ray/session_*`"]:
        assert not _machine_paths(line), line


def test_committed_results_and_documents_hold_no_machine_path():
    files = _committed_files()
    assert any(f.parts[-3:-1] == ("pretrained", "mr") for f in files)  # the scan sees results/
    offending = {}
    for path in files:
        if path.suffix in {".png", ".jpg", ".svg", ".pdf"} or not path.is_file():
            continue
        lines = _machine_paths(path.read_text(errors="replace"))
        if lines:
            offending[str(path.relative_to(ROOT))] = lines[:3]
    assert not offending, f"machine paths in committed files: {offending}"


def test_benchmark_command_line_is_shown_without_machine_paths(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import common

    monkeypatch.chdir(tmp_path)
    argv = [
        "benchmarks/run_all.py",
        "--json",
        "/root/out/run_all_gpu.json",
        f"--json={tmp_path / 'sub' / 'a.json'}",
        "--train-size",
        "1024",
    ]
    assert common.shown_command(argv) == [
        "benchmarks/run_all.py",
        "--json",
        "run_all_gpu.json",
        "--json=sub/a.json",
        "--train-size",
        "1024",
    ]


@pytest.mark.slow
def test_study_pretrained_isotropy_names_its_folder_relative(tmp_path, tiny_bert, sentiment_files):
    from isobn.study.pretrained import ensure_pretrained_isotropy
    from isobn.study.spec import parse_study

    study_file = tmp_path / "study.toml"
    text = (
        f'[study]\nname = "tiny"\nmodel = "{tiny_bert}"\n'
        '[train]\nmax_length = 24\npooling = "cls"\n'
        f'[tasks.sent]\ntrain_file = "{sentiment_files["train"]}"\n'
        f'dev_file = "{sentiment_files["dev"]}"\n'
        '[[block]]\nname = "main"\ntasks = ["sent"]\nsizes = [24]\nmethods = ["none"]\n'
        "seeds = [1]\n"
    )
    study_file.write_text(text)
    out = (tmp_path / "out").resolve()
    ensure_pretrained_isotropy(parse_study(text, study_file), out)
    payload = json.loads((out / "pretrained" / "sent" / "isotropy.json").read_text())
    assert payload["config"]["out"] == "pretrained/sent"
    summary = (out / "pretrained_isotropy.json").read_text()
    assert str(out) not in summary
