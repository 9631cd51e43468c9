"""A study directory belongs to one study file: its settings, its declared cells, its data.

Metamorphic: a second study file with other settings on the directory is refused; a data
file changed after a cell finished gives a refusal (or a cell listed apart), never the old
number in a table; cells the file does not declare are listed apart, not counted.
"""

import json
import shutil
import threading
from pathlib import Path

import pytest

from isobn.cli.main import main
from isobn.errors import UserError
from isobn.study.runner import check_study_directory, finished_cells
from isobn.study.spec import load_study

STUDY = """[study]
name = "tiny"
model = "{model}"
[train]
epochs = 1
batch_size = 16
max_length = 24
learning_rate = {lr}
isotropy_examples = 16
pooling = "cls"
[tasks.sent]
train_file = "{train}"
dev_file = "{dev}"
[[block]]
name = "main"
tasks = ["sent"]
sizes = [{size}]
methods = ["none"]
seeds = [1]
"""


def write_study(path: Path, model: str, files: dict, lr: str = "1e-3", size: int = 24) -> Path:
    path.write_text(
        STUDY.format(model=model, lr=lr, size=size, train=files["train"], dev=files["dev"])
    )
    return path


def test_a_second_study_file_with_other_settings_is_refused(tmp_path, sentiment_files):
    first = load_study(write_study(tmp_path / "a.toml", "m", sentiment_files, lr="2e-5"))
    second = load_study(write_study(tmp_path / "b.toml", "m", sentiment_files, lr="1e-3"))
    out = tmp_path / "out"
    check_study_directory(first, out)
    with pytest.raises(UserError) as error:
        check_study_directory(second, out)
    message = str(error.value)
    assert f"{out} belongs to another study file ({out / 'study.toml'})" in message
    assert "task sent has other settings (learning_rate 2e-05 -> 0.001)" in message
    assert (out / "study.toml").read_text() == first.source  # still bound to the first
    # the same settings in another text (a comment, a block added): the same study
    same = tmp_path / "c.toml"
    same.write_text(first.source + "# a note\n")
    check_study_directory(load_study(same), out)


def test_two_study_files_started_at_once_bind_the_directory_once(tmp_path, sentiment_files):
    """The check and the binding are one step under a lock: of two files with other settings
    started together on a fresh directory, exactly one is bound and the other refused."""
    studies = [
        load_study(write_study(tmp_path / f"{lr}.toml", "m", sentiment_files, lr=lr))
        for lr in ("2e-5", "1e-3")
    ]
    out = tmp_path / "out"
    barrier, outcomes = threading.Barrier(2), {}

    def bind(study):
        barrier.wait()
        try:
            check_study_directory(study, out)
            outcomes[study.path] = "bound"
        except UserError:
            outcomes[study.path] = "refused"

    for _ in range(5):
        shutil.rmtree(out, ignore_errors=True)
        threads = [threading.Thread(target=bind, args=(s,)) for s in studies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes.values()) == ["bound", "refused"]
        winner = next(s for s in studies if outcomes[s.path] == "bound")
        assert (out / "study.toml").read_text() == winner.source


def test_every_size_is_checked_before_the_first_cell_runs(
    tmp_path, tiny_bert, sentiment_files, capsys
):
    """A later task whose size exceeds its training set is refused before the earlier
    task's cells train."""
    path = write_study(tmp_path / "s.toml", tiny_bert, sentiment_files, size=48)
    small = tmp_path / "small.csv"
    small.write_text("".join(Path(sentiment_files["train"]).read_text().splitlines(True)[:31]))
    text = path.read_text().replace('tasks = ["sent"]', 'tasks = ["sent", "small"]')
    text = text.replace("[[block]]", f'[tasks.small]\ntrain_file = "{small}"\n'
                        f'dev_file = "{sentiment_files["dev"]}"\n[[block]]')  # fmt: skip
    path.write_text(text)
    out = tmp_path / "out"
    assert main(["study", str(path), "--out", str(out)]) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
    assert line == (
        "isobn study: error: task small has 30 training rows, fewer than the study's size 48: "
        f'use sizes up to 30, or "full", in {path}'
    )
    assert not (out / "cells").exists() and not (out / "runs").exists()


@pytest.mark.slow
def test_tables_hold_only_the_declared_cells_of_the_file_s_settings_and_data(
    tmp_path, tiny_bert, sentiment_files, capsys
):
    from isobn.study.results import write_study_results

    data = tmp_path / "data"
    data.mkdir()
    files = {k: str(shutil.copy(v, data / Path(v).name)) for k, v in sentiment_files.items()}
    path = write_study(tmp_path / "s.toml", tiny_bert, files)
    out = tmp_path / "out"
    assert main(["study", str(path), "--out", str(out), "--max-cells", "1"]) == 0
    (record,) = finished_cells(out)
    assert record["fingerprints"]["train_file"].startswith("blake2b:")
    # a cell the file does not declare (seed 9): listed apart, never counted
    stray = out / "cells" / "sent" / "n24" / "none" / "seed9.json"
    stray.write_text(json.dumps({**record, "seed": 9}))
    study = load_study(path)
    write_study_results(study, out)
    results = json.loads((out / "results.json").read_text())
    assert [c["seed"] for c in results["cells"]] == [1]
    assert results["apart"] == [
        {"cell": "sent/n24/none/seed9", "reason": "not declared by the study file"}
    ]
    markdown = (out / "RESULTS.md").read_text()
    assert "Cells finished: 1 of 1 planned." in markdown
    assert "- `sent/n24/none/seed9`: not declared by the study file" in markdown
    capsys.readouterr()
    assert main(["study", str(path), "--out", str(out), "--plan"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "done  sent/n24/none/seed1  (main)",
        "1 cells, 1 finished",
    ]
    # the training file changes: the finished cell is not reused, nor tabled
    lines = Path(files["train"]).read_text().splitlines(keepends=True)
    Path(files["train"]).write_text("".join([lines[0], *lines[2:], lines[1]]))  # row order
    capsys.readouterr()
    assert main(["study", str(path), "--out", str(out)]) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
    assert f"holds cell sent/n24/none/seed1 trained on other data: --train {files['train']}" in line
    assert main(["study", str(path), "--out", str(out), "--report-only"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["cells"] == []
    assert results["apart"][0] == {
        "cell": "sent/n24/none/seed1",
        "reason": f"trained on other data: --train {files['train']}",
    }
    assert "Cells finished: 0 of 1 planned." in (out / "RESULTS.md").read_text()
    # --plan judges the cell as the run and --report-only do: stale, not done
    capsys.readouterr()
    assert main(["study", str(path), "--out", str(out), "--plan"]) == 0
    plan = capsys.readouterr().out.splitlines()
    assert plan[0] == (
        f"stale  sent/n24/none/seed1  (main)  trained on other data: --train {files['train']}"
    )
    assert plan[1] == "1 cells, 0 finished, 1 stale" and "a run refuses it" in plan[2]
    # the file missing, or a directory in its place: a run refuses the study; --plan says so,
    # naming what stands there (a directory was "file not found")
    train = Path(files["train"])
    train.unlink()
    said = {
        "missing": f"train_file: file not found: {train}",
        "directory": f"train_file: {train} is a directory, not a data file; pass one of its "
        f"data files (data.csv), e.g. {train / 'data.csv'}",
    }
    for replaced in ("missing", "directory"):
        if replaced == "directory":
            train.mkdir()
            (train / "data.csv").write_text("text,label\n")
        assert main(["study", str(path), "--out", str(out)]) == 2
        (refusal,) = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
        assert main(["study", str(path), "--out", str(out), "--plan"]) == 0
        last = capsys.readouterr().out.splitlines()[-1]
        assert last == "a run refuses this study as it is: " + refusal.split("error: ", 1)[1]
        assert said[replaced] in last, last
