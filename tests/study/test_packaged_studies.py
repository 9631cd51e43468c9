"""The study files ship in the package: `isobn study --list`, a study run by name, and the
command RESULTS.md records, with paths relative to where it was run."""

from pathlib import Path

import pytest

from isobn.cli.main import main
from isobn.study.markdown import relative_command
from isobn.study.packaged import packaged_studies

ROOT = Path(__file__).resolve().parents[2]


def test_list_shows_every_packaged_study(capsys):
    assert main(["study", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [
        "glue",
        "glue-tuned",
        "offline",
        "offline-regularisers",
        "offline-tuned",
    ]
    offline = next(line for line in lines if line.startswith("offline "))
    assert "IsoBN against no norm on the three offline tasks" in offline
    assert offline.endswith("offline.toml)")


def test_the_repository_studies_folder_is_the_packaged_files():
    for name, path in packaged_studies().items():
        assert (ROOT / "studies" / f"{name}.toml").read_text() == path.read_text()


def test_a_study_runs_by_name(tmp_path, capsys):
    out = tmp_path / "offline"
    assert main(["study", "offline", "--out", str(out), "--plan"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "145 cells, 0 finished"
    assert not out.exists()  # --plan writes nothing


def test_an_unknown_study_name_lists_the_packaged_ones(tmp_path, capsys):
    assert main(["study", "ofline", "--out", str(tmp_path / "o")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("isobn study: error: study file not found: ofline; pass a .toml file")
    assert (
        "(glue, glue-tuned, offline, offline-regularisers, offline-tuned; see `isobn study --list`)"
        in line
    )


@pytest.mark.parametrize(
    "argv, missing",
    [(["study"], "STUDY, --out"), (["study", "offline"], "--out")],
)
def test_running_needs_a_study_and_out(argv, missing, capsys):
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"the following arguments are required: {missing}" in line


def test_the_recorded_command_has_paths_relative_to_where_it_ran(tmp_path):
    here = tmp_path / "project"
    argv = ["isobn", "study", str(here / "studies" / "offline.toml"), "--out", str(here / "r")]
    assert relative_command(argv, here) == "isobn study studies/offline.toml --out r"
    assert relative_command(["isobn", "study", "s.toml", f"--out={here}"], here) == (
        "isobn study s.toml --out=."
    )
    # outside the directory it ran in: absolute, quoted for the shell
    assert relative_command(["isobn", "study", "s.toml", "--out", "/data/a b"], here) == (
        "isobn study s.toml --out '/data/a b'"
    )


def test_a_study_session_records_the_relative_command(
    tmp_path, monkeypatch, tiny_bert, sentiment_files
):
    """The command of a real run, from sys.argv with an absolute --out, as sessions.jsonl
    records it (and RESULTS.md shows it)."""
    import json
    import sys

    monkeypatch.chdir(tmp_path)
    files = sentiment_files
    study = tmp_path / "s.toml"
    study.write_text(f"""
[study]
name = "tiny"
model = "{tiny_bert}"
[train]
epochs = 1
batch_size = 16
isotropy_examples = 0
[tasks.sent]
train_file = "{files["train"]}"
dev_file = "{files["dev"]}"
[[block]]
name = "main"
tasks = ["sent"]
sizes = [48]
methods = ["none"]
seeds = [1]
""")
    argv = ["study", "s.toml", "--out", str(tmp_path / "out"), "--max-cells", "1"]
    monkeypatch.setattr(sys, "argv", ["isobn", *argv])
    assert main(argv) == 0
    sessions = (tmp_path / "out" / "sessions.jsonl").read_text().splitlines()
    assert json.loads(sessions[0])["command"] == "isobn study s.toml --out out --max-cells 1"
    assert "- Command: `isobn study s.toml --out out --max-cells 1`" in (
        (tmp_path / "out" / "RESULTS.md").read_text()
    )
