"""The release is stated once: CHANGELOG's top release, CITATION.cff and `isobn --version` agree."""

import re
import subprocess
import sys
from pathlib import Path

import tomllib

import isobn

ROOT = Path(__file__).resolve().parents[1]


def _top_release() -> tuple[str, str]:
    """(version, date) of the first '## [X.Y.Z] - DATE' heading in CHANGELOG.md."""
    text = (ROOT / "CHANGELOG.md").read_text()
    match = re.search(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", text, re.MULTILINE)
    assert match, "CHANGELOG.md has no '## [X.Y.Z] - YYYY-MM-DD' release heading"
    return match.group(1), match.group(2)


def _citation() -> tuple[str, str]:
    text = (ROOT / "CITATION.cff").read_text()
    version = re.search(r"^version: *\"?([^\"\n]+)\"?$", text, re.MULTILINE)
    date = re.search(r"^date-released: *\"?([^\"\n]+)\"?$", text, re.MULTILINE)
    assert version and date, "CITATION.cff needs 'version:' and 'date-released:'"
    return version.group(1).strip(), date.group(1).strip()


def test_changelog_citation_and_package_name_one_release():
    version, date = _top_release()
    assert _citation() == (version, date)
    assert isobn.__version__ == version


def test_changelog_keeps_an_unreleased_section_above_the_release():
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\]", text, re.MULTILINE)
    assert headings[0] == "Unreleased"
    assert headings[1] == _top_release()[0]


def test_pyproject_reads_the_version_from_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "isobn.__version__"}


def test_cli_version_prints_the_release():
    result = subprocess.run(
        [sys.executable, "-c", "from isobn.cli.main import main; main()", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == f"isobn {_top_release()[0]}"


def test_python_dash_m_isobn_is_the_command():
    result = subprocess.run(
        [sys.executable, "-m", "isobn", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"isobn {_top_release()[0]}"
    bad = subprocess.run([sys.executable, "-m", "isobn", "no-such-command"], capture_output=True)
    assert bad.returncode == 2 and b"Traceback" not in bad.stderr
