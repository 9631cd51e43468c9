"""Inputs identified by content: a changed data file is refused, never reused or resumed on.

Metamorphic: the same command after a data file changed gives a refusal naming the file (or,
in a new directory, a new result), never the old result; the same bytes rewritten are the
same input.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import QUICK_ARGS, quick_config

from isobn.cli.main import main
from isobn.errors import UserError
from isobn.training.fingerprint import file_fingerprint, input_fingerprints


def copy_files(files: dict[str, str], where: Path) -> dict[str, str]:
    where.mkdir(parents=True, exist_ok=True)
    return {name: str(shutil.copy(path, where / Path(path).name)) for name, path in files.items()}


def change_one_label(path: str) -> None:
    """Flip the label of the first data row: the same size, another data set."""
    lines = Path(path).read_text().splitlines(keepends=True)
    text, label = lines[1].rstrip("\n").rsplit(",", 1)
    flipped = {"pos": "neg", "neg": "pos"}[label]
    lines[1] = f"{text},{flipped}\n"
    Path(path).write_text("".join(lines))


def test_a_fingerprint_is_of_the_content(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("text,label\ngood,pos\n")
    b.write_text("text,label\ngood,pos\n")
    assert file_fingerprint(a) == file_fingerprint(b)
    assert file_fingerprint(a).startswith("blake2b:") and len(file_fingerprint(a)) == 8 + 32
    before = file_fingerprint(a)
    a.write_text("text,label\ngood,neg\n")  # the same size: only the content tells
    os.utime(a, ns=(1, 1))
    assert file_fingerprint(a) != before


def test_config_json_records_the_fingerprints_of_the_inputs(trained_run):
    config = json.loads((trained_run / "config.json").read_text())
    prints = config["fingerprints"]
    assert set(prints) == {"train_file", "dev_file", "test_file", "model"}
    assert prints["train_file"] == file_fingerprint(config["train_file"])
    weights = Path(config["model"]) / "model.safetensors"
    assert prints["model"] == file_fingerprint(weights)


def test_a_finished_experiment_run_is_not_reused_on_a_changed_file(
    tmp_path, tiny_bert, sentiment_files, capsys
):
    files = copy_files(sentiment_files, tmp_path / "data")
    out = tmp_path / "exp"
    argv = ["experiment", "--model", tiny_bert, "--out", str(out), "--methods", "none"]
    argv += ["--seeds", "1", "--train", files["train"], "--dev", files["dev"], *QUICK_ARGS]
    argv += ["--max-train", "32", "--pooling", "cls"]
    assert main(argv) == 0
    metrics = next(out.rglob("metrics.json"))
    stamp = metrics.stat().st_mtime_ns
    # the same bytes written again: the same input, reused
    Path(files["train"]).write_bytes(Path(files["train"]).read_bytes())
    assert main(argv) == 0
    assert metrics.stat().st_mtime_ns == stamp  # not trained again
    capsys.readouterr()
    # another data set under the same name: refused, the old result neither reused nor lost
    change_one_label(files["train"])
    assert main(argv) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
    assert f"was trained on other data: --train {files['train']} changed since" in line
    assert "choose another --out" in line
    assert metrics.stat().st_mtime_ns == stamp


def test_resume_on_a_changed_file_is_refused(tmp_path, tiny_bert, sentiment_files):
    from isobn.training.train import train

    files = copy_files(sentiment_files, tmp_path / "data")
    out = tmp_path / "run"
    cfg = quick_config(out, tiny_bert, files, epochs=1, max_train=32, keep_last=True)
    train(cfg)
    (out / "metrics.json").unlink()  # last/ of the final step: an interrupted run
    change_one_label(files["dev"])
    with pytest.raises(UserError) as error:
        train(quick_config(out, tiny_bert, files, epochs=1, max_train=32, resume=True))
    message = str(error.value)
    assert message.startswith(f"cannot resume: the interrupted run in {out} was trained on other")
    assert f"--dev {files['dev']} changed since" in message and "\n" not in message


def test_a_run_of_an_earlier_version_without_fingerprints_is_still_reused(tmp_path, trained_run):
    """config.json of an earlier version records no fingerprints: its inputs are unknown,
    and its result is reused as before (its settings are still checked)."""
    from dataclasses import replace

    from isobn.training.config import TrainConfig
    from isobn.training.run_dir import finished_result

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    config = json.loads((run / "config.json").read_text())
    assert config.pop("fingerprints")
    (run / "config.json").write_text(json.dumps(config))
    cfg = replace(TrainConfig.from_dict(config), out=str(run), resume=True)
    assert finished_result(cfg, run) is not None
    assert input_fingerprints(cfg)["train_file"].startswith("blake2b:")


def test_a_model_that_is_not_there_has_no_fingerprint_and_no_error(tmp_path, sentiment_files):
    """Tables of finished cells need no model: a moved model directory, or a hub name, is
    not judged here (loading it says what is wrong, where it is needed)."""
    from isobn.training.config import TrainConfig

    for model in (str(tmp_path / "moved"), "org/some-hub-model"):
        cfg = TrainConfig(
            out="x",
            model=model,
            train_file=sentiment_files["train"],
            dev_file=sentiment_files["dev"],
        )
        assert set(input_fingerprints(cfg)) == {"train_file", "dev_file"}


def test_glue_files_read_from_data_dir_are_fingerprinted(tmp_path):
    """A GLUE task from --data-dir is identified by the TSVs it reads (train, then each dev
    split); moving them keeps the fingerprint, changing one changes it; other data have none."""
    from isobn.training.config import TrainConfig
    from isobn.training.fingerprint import fingerprint_changes

    glue = Path(__file__).parents[1] / "data" / "glue"
    shutil.copytree(glue, tmp_path / "glue")
    mnli = TrainConfig(out="x", task="MNLI", data_dir=str(tmp_path / "glue"))
    files = ["train.tsv", "dev_matched.tsv", "dev_mismatched.tsv"]
    expected = "+".join(file_fingerprint(tmp_path / "glue" / "MNLI" / name) for name in files)
    assert input_fingerprints(mnli)["data_dir"] == expected
    moved = TrainConfig(out="x", task="mnli", data_dir=str(glue))
    assert fingerprint_changes(input_fingerprints(mnli), moved) == []
    with open(tmp_path / "glue" / "MNLI" / "dev_mismatched.tsv", "a") as handle:
        handle.write("\n")
    assert fingerprint_changes({"data_dir": expected}, mnli) == [f"--data-dir {tmp_path / 'glue'}"]
    for cfg in (
        TrainConfig(out="x", task="sst2"),  # the hub
        TrainConfig(out="x", task="mr", data_dir=str(glue)),  # ignores data_dir
        TrainConfig(out="x", task="sst2", data_dir=str(tmp_path / "nowhere")),
    ):
        assert "data_dir" not in input_fingerprints(cfg)
