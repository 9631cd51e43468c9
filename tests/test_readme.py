"""The README's Python examples run as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, capsys):
    exec(compile(BLOCKS[index], f"README block {index}", "exec"), {})


TOML_BLOCKS = re.findall(r"```toml\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(TOML_BLOCKS)))
def test_readme_study_files_validate_and_plan(index, tmp_path, monkeypatch):
    from isobn.study.spec import check_task_files, load_study

    monkeypatch.chdir(tmp_path)  # the files it names, relative to where the study runs
    for name in re.findall(r'_file = "(.*?)"', TOML_BLOCKS[index]):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("body,queue\nhello,a\n")
    path = tmp_path / "study.toml"
    path.write_text(TOML_BLOCKS[index])
    study = load_study(path)
    assert len(study.cells()) == 50  # 2 sizes x 5 methods x 5 seeds
    check_task_files(study)  # found from the directory the study runs in, as the README says
