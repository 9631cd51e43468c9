"""What a study trains on is checked before it writes anything, and `--data-dir` points the
GLUE tasks of a packaged study at the GLUE files without editing the study file.

A study that cannot start (a hub model not in the cache on an offline machine, a missing
GLUE folder) fails with one line and leaves --out as it was; the GLUE files a cell trained
on are fingerprinted, so a later command on other files, or without them, is refused."""

import csv
import logging
from pathlib import Path

import pytest
from conftest import sentiment_rows

from isobn.cli.main import main
from isobn.errors import UserError
from isobn.study.record import finished_cells
from isobn.study.spec import Cell, load_study, with_data_dir

STUDY = """[study]
name = "g"
model = "{model}"
[train]
epochs = 1
batch_size = 16
max_length = 24
isotropy_examples = 16
pooling = "cls"
[tasks.sent]
train_file = "{train}"
dev_file = "{dev}"
[[block]]
name = "main"
tasks = {tasks}
sizes = ["full"]
methods = ["none"]
seeds = [1]
"""


def write_study(path: Path, model: str, files: dict, tasks=("sst2",)) -> Path:
    tasks = "[" + ", ".join(f'"{task}"' for task in tasks) + "]"
    path.write_text(STUDY.format(model=model, tasks=tasks, **files))
    return path


def write_sst2(glue: Path, train: int = 32, dev: int = 16) -> Path:
    """GLUE's SST-2 folder layout (sentence, label 0/1) under `glue`."""
    folder = glue / "SST-2"
    folder.mkdir(parents=True, exist_ok=True)
    for name, count, seed in (("train", train, 1), ("dev", dev, 2)):
        with open(folder / f"{name}.tsv", "w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["sentence", "label"])
            for row in sentiment_rows(count, seed):
                writer.writerow([row["text"], int(row["label"] == "pos")])
    return glue


def listing(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes() if path.is_file() else b"/"
        for path in sorted(folder.rglob("*"))
    }


def test_data_dir_is_every_glue_task_s_and_no_other(tmp_path, sentiment_files):
    path = write_study(tmp_path / "s.toml", "m", sentiment_files, tasks=("sst2", "rte", "sent"))
    study = with_data_dir(load_study(path), "./glue_data/")
    configs = {task: study.config(Cell(task, None, "none", 1), "") for task in ("sst2", "rte")}
    assert {task: cfg.data_dir for task, cfg in configs.items()} == {
        "sst2": "glue_data",
        "rte": "glue_data",
    }
    assert study.config(Cell("sent", None, "none", 1), "").data_dir is None
    assert study.source == path.read_text()  # the file as written; the cells record the path
    no_glue = load_study(write_study(tmp_path / "n.toml", "m", sentiment_files, tasks=("sent",)))
    with pytest.raises(UserError, match=r"--data-dir is for GLUE tasks, and .* runs none"):
        with_data_dir(no_glue, "glue_data")


@pytest.mark.parametrize("out_exists", [False, True])
def test_a_hub_model_not_in_the_cache_fails_with_one_line_and_leaves_out_as_it_was(
    tmp_path, sentiment_files, capfd, out_exists
):
    """Offline (HF_HUB_OFFLINE, as the tests run): no hub request, no retry lines, nothing
    written to --out."""
    path = write_study(tmp_path / "s.toml", "isobn-tests/not-a-cached-model", sentiment_files)
    path.write_text(path.read_text().replace('tasks = ["sst2"]', 'tasks = ["sent"]'))
    out = tmp_path / "out"
    if out_exists:
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    before = listing(out) if out_exists else None
    assert main(["study", str(path), "--out", str(out)]) == 2
    assert capfd.readouterr().err.splitlines() == [
        "isobn study: error: model isobn-tests/not-a-cached-model is not in the Hugging Face "
        "cache and the hub is off (HF_HUB_OFFLINE): download it once with a network connection "
        "(hf download isobn-tests/not-a-cached-model), or pass `minilm` or a local model "
        "directory"
    ]
    assert (listing(out) if out_exists else out.exists()) == (before if out_exists else False)


def test_an_unreachable_hub_is_one_line_without_retries(monkeypatch, capfd):
    """Online but without a network: one request, its warnings silenced, one line."""
    import logging

    import huggingface_hub
    from huggingface_hub import constants

    from isobn.training.pretrained import resolve_model_path

    calls = []

    def unreachable(url, timeout=None, **kwargs):
        calls.append(url)
        logging.getLogger("huggingface_hub.utils._http").warning("thrown while requesting HEAD")
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(constants, "is_offline_mode", lambda: False, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", unreachable)
    level = logging.getLogger("huggingface_hub").level
    with pytest.raises(UserError) as error:
        resolve_model_path("isobn-tests/not-a-cached-model")
    assert str(error.value) == (
        "model isobn-tests/not-a-cached-model is not in the Hugging Face cache and was not "
        "found on the hub (ConnectionError: [Errno -2] Name or service not known): check the "
        "name and the network, or pass `minilm` or a local model directory"
    )
    assert len(calls) == 1
    assert capfd.readouterr().err == ""  # the hub's warning silenced
    assert logging.getLogger("huggingface_hub").level == level  # and its level restored


def test_a_missing_glue_folder_leaves_out_as_it_was(tmp_path, tiny_bert, sentiment_files, capfd):
    path = write_study(tmp_path / "s.toml", tiny_bert, sentiment_files)
    out = tmp_path / "out"
    argv = ["study", str(path), "--out", str(out), "--data-dir", str(tmp_path / "nowhere")]
    assert main(argv) == 2
    assert capfd.readouterr().err.splitlines() == [
        f"isobn study: error: GLUE data directory not found: {tmp_path / 'nowhere'}; check "
        "--data-dir"
    ]
    assert not out.exists()


def test_a_study_on_glue_files_trains_and_its_cells_know_those_files(
    tmp_path, tiny_bert, sentiment_files, capfd
):
    """--data-dir trains the packaged study's GLUE tasks on local TSVs; each cell records the
    path and the files' fingerprint, so a later command without --data-dir, or on files that
    changed, is refused before anything loads or is written."""
    glue = write_sst2(tmp_path / "glue")
    path = write_study(tmp_path / "s.toml", tiny_bert, sentiment_files)
    out = tmp_path / "out"
    assert main(["study", str(path), "--out", str(out), "--data-dir", str(glue)]) == 0
    (record,) = finished_cells(out)
    assert record["config"]["data_dir"] == str(glue)
    assert record["fingerprints"]["data_dir"].startswith("blake2b:")
    assert main(["study", str(path), "--out", str(out), "--data-dir", str(glue)]) == 0
    capfd.readouterr()

    before = listing(out)
    assert main(["study", str(path), "--out", str(out)]) == 2
    assert capfd.readouterr().err.splitlines() == [
        f"isobn study: error: {out} holds cell sst2/full/none/seed1 trained with other settings "
        f"(data_dir '{glue}' -> None): pass the --data-dir it trained on (GLUE files), or use "
        "another --out"
    ]
    with open(glue / "SST-2" / "train.tsv", "a") as handle:
        handle.write("a new sentence\t1\n")
    assert main(["study", str(path), "--out", str(out), "--data-dir", str(glue)]) == 2
    assert capfd.readouterr().err.splitlines() == [
        f"isobn study: error: {out} holds cell sst2/full/none/seed1 trained on other data: "
        f"--data-dir {glue} changed since (its content differs): use another --out to train on "
        "the files as they are, or restore them"
    ]
    assert listing(out) == before


# GLUE's training sets (the hub's nyu-mll/glue, as the GLUE download), in examples
GLUE_TRAIN = {
    "cola": 8551,
    "sst2": 67349,
    "mrpc": 3668,
    "stsb": 5749,
    "qqp": 363846,
    "mnli": 392702,
    "qnli": 104743,
    "rte": 2490,
}
STEP_MS = (30.1, 35.1)  # BERT-base, fp32, H200: results/smoke-gpu/run_all_gpu.txt


def test_the_glue_instructions_agree_and_their_hours_follow_from_the_study():
    """The study file's comment and the guide give one command (--jobs 1 on one GPU), and the
    guide's GPU-hours are the study's steps times the measured BERT-base step."""
    from isobn.study.packaged import packaged_studies

    path = packaged_studies()["glue"]
    study = load_study(path)
    guide = (Path(__file__).parents[2] / "docs" / "guides" / "studies.md").read_text()
    command = "isobn study glue --out results/glue --data-dir glue_data --jobs 1"
    assert command in Path(path).read_text() and command in guide
    assert "<number of GPUs>" not in Path(path).read_text()
    measured = (Path(__file__).parents[2] / "results/smoke-gpu/run_all_gpu.txt").read_text()
    assert all(f"{ms}" in measured for ms in STEP_MS)

    cfg = study.config(study.cells()[0], "")
    assert (cfg.batch_size, cfg.drop_last, cfg.precision) == (16, True, "fp32")
    cells = study.cells()
    assert sorted({cell.task for cell in cells}) == sorted(GLUE_TRAIN) and len(cells) == 80
    per_epoch = sum(n // cfg.batch_size for n in GLUE_TRAIN.values())
    steps = per_epoch * cfg.epochs * len(cells) // len(GLUE_TRAIN)
    hours = [steps * ms / 1000 / 3600 for ms in STEP_MS]
    prose = " ".join(guide.split())  # the guide's lines joined
    assert f"{sum(GLUE_TRAIN.values()):,} examples" in prose
    assert f"{per_epoch:,} steps per epoch, {per_epoch * cfg.epochs:,} in 10 epochs" in prose
    assert (
        f"{steps / 1e6:.2f} million steps x 30.1-35.1 ms is {hours[0]:.1f}-{hours[1]:.1f} h"
        in prose
    )
    tuned = load_study(packaged_studies()["glue-tuned"])
    points = len(tuned.blocks[0].points)
    assert len(tuned.cells()) == points * len(cells) == 240
    tuned_hours = [points * h for h in hours]
    assert (
        f"{points * steps / 1e6:.2f} million steps x 30.1-35.1 ms = "
        f"{tuned_hours[0]:.1f}-{tuned_hours[1]:.1f} h" in prose
    )


def _classes_study(tmp_path: Path, model: str, counts: dict[str, int], sizes: str) -> Path:
    """A study of two seeds at `sizes` on a task whose training file has counts[label] rows of
    each label (dev: two rows of each)."""
    rows = [(f"{label} text {i}", label) for label, n in counts.items() for i in range(n)]
    dev = [(f"{label} dev {i}", label) for label in counts for i in range(2)]
    for name, data in (("train", rows), ("dev", dev)):
        with open(tmp_path / f"{name}.csv", "w", newline="") as handle:
            csv.writer(handle).writerows([("text", "label"), *data])
    study = tmp_path / "classes.toml"
    study.write_text(
        f'[study]\nmodel = "{model}"\n[train]\nepochs = 1\nbatch_size = 4\nmax_length = 16\n'
        f'isotropy_examples = 0\n[tasks.five]\ntrain_file = "{tmp_path / "train.csv"}"\n'
        f'dev_file = "{tmp_path / "dev.csv"}"\n[[block]]\ntasks = ["five"]\nsizes = {sizes}\n'
        'methods = ["none"]\nseeds = [1, 2]\n'
    )
    return study


def test_a_size_below_the_number_of_classes_is_warned_about_once_in_the_study_s_words(
    tmp_path, tiny_bert, capfd, caplog
):
    """Each cell loaded its task twice (to train, to record) and warned each time about
    "--max-train", an option the study does not have, naming "task file": two lines per
    cell. The study says it once, before its first cell, naming its size and its file."""
    study = _classes_study(tmp_path, tiny_bert, {f"c{i}": 4 for i in range(5)}, "[3]")
    with caplog.at_level(logging.INFO):
        assert main(["study", str(study), "--out", str(tmp_path / "out")]) == 0
    # this process's log (the study's checks) and the cells' processes' stderr
    err = "\n".join([*(r.getMessage() for r in caplog.records), capfd.readouterr().err])
    warned = [line for line in err.splitlines() if "can never predict" in line]
    assert warned == [
        f"{study}: task five: size 3 keeps 3 training rows, which miss 2 of the 5 classes of "
        "the evaluation splits (e.g. 'c3', 'c4'): the model can never predict them; use a "
        f"larger size in {study} (at least 5, the number of classes)"
    ], err
    assert "--max-train" not in err and "task file" not in err


def test_a_size_whose_sample_holds_one_class_is_refused_before_out_is_written(
    tmp_path, tiny_bert, capfd
):
    """Size 2 of a task with one large class keeps two rows of that class: every cell would
    train a classifier of one class (isobn train refuses a training file of one class)."""
    study = _classes_study(tmp_path, tiny_bert, {"big": 20, "a": 2, "b": 2}, "[2, 8]")
    out = tmp_path / "out"
    assert main(["study", str(study), "--out", str(out)]) == 2
    assert capfd.readouterr().err.splitlines()[-1] == (
        f"isobn study: error: {study}: task five: size 2 keeps 2 training rows, all of class "
        "'big': a model trained on them predicts it for every text; use a larger size in "
        f"{study} (at least 3, the number of classes)"
    )
    assert not out.exists()
