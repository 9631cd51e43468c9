"""Study names that cannot escape --out, and one cell for two spellings of one thing."""

import pytest

from isobn.errors import UserError
from isobn.study.spec import load_study

BLOCK = "[[block]]\ntasks={tasks}\nsizes=[10]\nmethods={methods}\nseeds=[1]\n"


def study_text(tasks="['mr']", methods="['none']", head="") -> str:
    return head + BLOCK.format(tasks=tasks, methods=methods)


FILES = 'train_file = "t.csv"\ndev_file = "d.csv"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f'[tasks."../../escaped"]\n{FILES}' + study_text("['../../escaped']"), "task name"),
        (f'[tasks."/tmp/x"]\n{FILES}' + study_text("['/tmp/x']"), "task name"),
        (f'[tasks.""]\n{FILES}' + study_text("['']"), "task name"),
        (f'[tasks."a|b"]\n{FILES}' + study_text("['a|b']"), "task name"),
        (f'[tasks."a\\nb"]\n{FILES}' + study_text("['a\\nb']"), "task name"),
        (study_text("['..']"), "task name"),
        ('[study]\nname = "x|y"\n' + study_text(), "[study] name"),
        ('[study]\nname = "line\\nbreak"\n' + study_text(), "[study] name"),
        (study_text().replace("[[block]]\n", '[[block]]\nname = "../b"\n'), "name must be"),
        (study_text().replace("[[block]]\n", '[[block]]\nname = "a b"\n'), "name must be"),
        (
            f"[tasks.mr]\n{FILES}[tasks.MR]\n{FILES}" + study_text(),
            "[tasks.mr] and [tasks.MR] are one task",
        ),
        (study_text("['mr', 'MR', 'Mr']"), "names one task twice: 'mr' and 'MR' are both 'mr'"),
        (study_text("['sst2', 'SST-2']"), "names one task twice: 'sst2' and 'SST-2'"),
        (
            study_text(methods="['isobn+correg+istar', 'isobn+istar+correg']"),
            "names one method twice: 'isobn+correg+istar' and 'isobn+istar+correg' are both",
        ),
    ],
)
def test_names_are_identifiers_and_spellings_are_one(tmp_path, text, message):
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(UserError) as error:
        load_study(path)
    text = str(error.value)
    assert message in text and "\n" not in text, text
    assert "letters, digits and _ . + -" in text or "twice" in text or "one task" in text


def test_a_task_is_the_file_s_table_whatever_its_case(tmp_path):
    """tasks=["MR"] trains with the file's [tasks.mr] settings, not the shipped defaults."""
    path = tmp_path / "s.toml"
    path.write_text("[tasks.mr]\nmax_length = 17\n" + study_text("['MR']"))
    study = load_study(path)
    (cell,) = study.cells()
    assert cell.task == "mr" and cell.key == "mr/n10/none/seed1"
    assert study.config(cell, "x").max_length == 17


def test_a_file_task_is_found_without_regard_to_case_and_keeps_its_name(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(f"[tasks.Reviews]\n{FILES}" + study_text("['REVIEWS']"))
    study = load_study(path)
    (cell,) = study.cells()
    assert cell.task == "Reviews" and study.config(cell, "x").train_file == "t.csv"


def test_two_blocks_with_two_spellings_of_a_task_and_a_method_share_their_cells(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        study_text("['mr']", "['isobn+correg+istar']")
        + BLOCK.format(tasks="['MR']", methods="['isobn+istar+correg']")
        + BLOCK.format(tasks="['Mr']", methods="['isobn+istar:weight=-5,zeta=0.2+correg']")
    )
    cells = load_study(path).cells()
    assert [(c.task, c.method, c.blocks) for c in cells] == [
        ("mr", "isobn+correg+istar", ("block1", "block2", "block3"))
    ]


def test_a_study_without_a_name_is_named_by_a_safe_file_name(tmp_path):
    path = tmp_path / "my study.toml"
    path.write_text(study_text())
    assert load_study(path).name == "study"
    path = tmp_path / "ablation-2.toml"
    path.write_text(study_text())
    assert load_study(path).name == "ablation-2"
