"""Bad input through `isobn train`: one line on stderr naming the problem and the fix, exit 2,
no traceback; and a failing re-invocation loses nothing of a finished run.

Most cases call isobn.cli.main.main in-process (a subprocess costs seconds of imports); a few
run `python -m isobn.cli.main` for real, in parallel, to check the actual stderr and exit code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import sentiment_rows, write_csv

from isobn.cli.main import main

QUICK = ["--max-length", "16", "--epochs", "1", "--batch-size", "8", "--pooling", "cls"]
ERROR = "isobn train: error: "


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_bert) -> dict[str, str]:
    """Good and bad data files, and broken model directories, by name."""
    d = tmp_path_factory.mktemp("bad-input")
    rows = sentiment_rows(16, 0)

    def text(name: str, content: str) -> str:
        (d / name).write_text(content)
        return str(d / name)

    no_tokenizer = d / "no-tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(Path(tiny_bert) / name, no_tokenizer / name)
    no_weights = shutil.copytree(tiny_bert, d / "no-weights")
    (no_weights / "model.safetensors").unlink()
    (d / "no-config").mkdir()
    (d / "a-file").write_text("not a directory\n")
    (d / "latin1.csv").write_bytes("text,label\ncafé good,pos\nbad,neg\n".encode("latin-1"))
    return {
        "train": write_csv(d / "train.csv", rows),
        "dev": write_csv(d / "dev.csv", sentiment_rows(8, 1)),
        "empty": text("empty.csv", ""),
        "header_only": text("header.csv", "text,label\n"),
        "unclosed_quote": text("quote.csv", 'text,label\n"the movie,pos\nbad,neg\n'),
        "bad_json": text("bad.jsonl", '{"text": "good", "label": "pos"}\n{"text": "bad",\n'),
        "json_list": text("list.jsonl", '["good", "pos"]\n'),
        "txt": text("data.txt", "text,label\ngood,pos\n"),
        "wrong_columns": text("columns.csv", "sentence,y\ngood,pos\nbad,neg\n"),
        "no_label_key": text("nolabel.jsonl", '{"text": "good", "label": "pos"}\n{"text": "x"}\n'),
        "empty_text": text("emptytext.csv", "text,label\ngood,pos\n  ,neg\n"),
        "null_text": text("null.jsonl", '{"text": null, "label": "pos"}\n'),
        "empty_label": text("emptylabel.csv", "text,label\ngood,pos\nbad,\n"),
        "unseen_dev": text("unseen.csv", "text,label\ngood,pos\nfine,maybe\n"),
        "latin1": str(d / "latin1.csv"),
        "one_class": text("oneclass.csv", "text,label\ngood,pos\nfine,pos\n"),
        "duplicate_header": text("dup.csv", "text,text,label\na,b,pos\n"),
        "no_tokenizer": str(no_tokenizer),
        "no_config": str(d / "no-config"),
        "no_weights": str(no_weights),
        "a_file": str(d / "a-file"),
        "dir": str(d),
    }


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def train_argv(files, tiny_bert, out, train="train", dev="dev", *extra) -> list[str]:
    argv = ["train", "--out", str(out), "--model", tiny_bert, *QUICK, *extra]
    if train:
        argv += ["--train", files.get(train, train)]
    if dev:
        argv += ["--dev", files.get(dev, dev)]
    return argv


def assert_one_line_error(code: int, err: str, *fragments: str, prefix: str = ERROR) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(prefix), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# (id, train file, dev file, extra arguments, fragments of the message: the problem and the fix)
CASES = [
    # data files
    ("missing-file", "/nonexistent/train.csv", "dev", [], ["file not found", "check the path"]),
    ("empty-file", "empty", "dev", [], ["is empty", "header row"]),
    ("header-only", "header_only", "dev", [], ["only a header", "add rows"]),
    ("unclosed-quote", "unclosed_quote", "dev", [], ["fields but the header has", "unclosed"]),
    ("malformed-jsonl", "bad_json", "dev", [], ["line 2: invalid JSON", "fix the line"]),
    ("jsonl-not-object", "json_list", "dev", [], ["JSON object {...}, got list", "per row"]),
    ("unsupported-type", "txt", "dev", [], ["unsupported file type '.txt'", ".jsonl"]),
    (
        "directory-as-file",
        "dir",
        "dev",
        [],
        ["is a directory, not a data file", "pass one of its data files"],
    ),
    ("wrong-columns", "wrong_columns", "dev", [], ["no column 'text'", "sentence, y"]),
    ("missing-label-column", "train", "dev", ["--label-column", "y"], ["no column 'y'"]),
    ("row-without-label", "no_label_key", "dev", [], ["line 2: no column 'label'"]),
    ("empty-text", "empty_text", "dev", [], ["line 3: empty text", "fill or drop the row"]),
    ("null-text", "null_text", "dev", [], ["holds null, not text", "fix or drop the row"]),
    ("empty-label", "empty_label", "dev", [], ["line 3: empty label", "fill or drop the row"]),
    (
        "one-column-two-roles",
        "train",
        "dev",
        ["--label-column", "text"],
        ["the text column and the label column are both 'text'", "--label-column"],
    ),
    ("unseen-dev-label", "train", "unseen_dev", [], ["'maybe' does not occur", "fix the label"]),
    ("not-utf8", "latin1", "dev", [], ["not valid UTF-8 (byte 0xe9 on line 2)", "iconv"]),
    ("one-class", "one_class", "dev", [], ["every training label is 'pos'", "two classes"]),
    ("duplicate-header", "duplicate_header", "dev", [], ["'text' appears twice", "rename"]),
    ("regression-text-labels", "train", "dev", ["--regression"], ["is not a number"]),
    ("train-without-dev", "train", None, [], ["need both --train FILE and --dev FILE"]),
    (
        "too-few-rows",
        "train",
        "dev",
        ["--max-train", "1"],
        ["--max-train 1 keeps 1 training row, all of class", "raise --max-train"],
    ),
    # numbers
    ("negative-lr", "train", "dev", ["--lr", "-0.001"], ["--lr must be > 0"]),
    ("infinite-lr", "train", "dev", ["--lr", "inf"], ["--lr must be a finite number"]),
    ("nan-lr", "train", "dev", ["--lr", "nan"], ["--lr must be"]),
    ("lr-not-a-number", "train", "dev", ["--lr", "abc"], ["--lr: invalid float value", "--help"]),
    ("zero-batch-size", "train", "dev", ["--batch-size", "0"], ["--batch-size must be a positive"]),
    ("zero-momentum", "train", "dev", ["--method", "isobn:momentum=0"], ["must be in (0, 1]"]),
    ("momentum-above-1", "train", "dev", ["--method", "isobn:momentum=1.5"], ["in (0, 1]"]),
    ("negative-beta", "train", "dev", ["--method", "isobn:beta=-0.5"], ["must be >= 0"]),
    ("zero-epochs", "train", "dev", ["--epochs", "0"], ["--epochs must be a positive integer"]),
    ("nan-weight-decay", "train", "dev", ["--weight-decay", "nan"], ["--weight-decay must be a"]),
    ("negative-weight-decay", "train", "dev", ["--weight-decay", "-0.1"], ["must be >= 0"]),
    ("negative-max-grad-norm", "train", "dev", ["--max-grad-norm", "-1"], ["--max-grad-norm must"]),
    ("zero-adam-epsilon", "train", "dev", ["--adam-epsilon", "0"], ["--adam-epsilon must be > 0"]),
    ("inf-adam-epsilon", "train", "dev", ["--adam-epsilon", "inf"], ["must be a finite number"]),
    ("nan-adam-epsilon", "train", "dev", ["--adam-epsilon", "nan"], ["--adam-epsilon must be a"]),
    ("adam-epsilon-text", "train", "dev", ["--adam-epsilon", "x"], ["invalid float value: 'x'"]),
    (
        "drop-last-no-batch",
        "train",
        "dev",
        ["--drop-last", "--batch-size", "32"],
        ["--drop-last leaves no training batch", "16 training examples", "lower --batch-size"],
    ),
    ("negative-isotropy", "train", "dev", ["--isotropy-examples", "-1"], ["must be >= 0"]),
    ("warmup-ratio-1", "train", "dev", ["--warmup-ratio", "1"], ["must be in [0, 1), got 1.0"]),
    ("dropout-1", "train", "dev", ["--dropout", "1"], ["--dropout must be in [0, 1)"]),
    ("negative-seed", "train", "dev", ["--seed", "-1"], ["--seed must be in [0, 2**32 - 1]"]),
    ("zero-log-every", "train", "dev", ["--log-every-steps", "0"], ["--log-every-steps must be"]),
    ("max-length-1", "train", "dev", ["--max-length", "1"], ["leaves no room", "--max-length 3"]),
    ("max-length-5000", "train", "dev", ["--max-length", "5000"], ["exceeds the 256 positions"]),
    ("fp16-on-cpu", "train", "dev", ["--precision", "fp16", "--cpu"], ["fp16 needs a GPU"]),
    # names
    ("unknown-task", None, None, ["--task", "nope"], ["unknown task 'nope'", "sst2"]),
    ("dropped-norm", "train", "dev", ["--norm", "isobn"], ["did you mean --method?"]),
    ("unknown-method", "train", "dev", ["--method", "nope"], ["unknown method 'nope' in --method"]),
    ("bad-method-parameter", "train", "dev", ["--method", "isobn:beta=-1"], ["must be >= 0"]),
    ("task-with-train", "train", "dev", ["--task", "sst2"], ["replaces a named task: drop --task"]),
    ("data-dir-with-train", "train", "dev", ["--data-dir", "g"], ["drop --data-dir, or drop"]),
    ("test-without-train", None, None, ["--test", "t.csv"], ["--test describes --train/--dev"]),
    (
        "columns-without-train",
        None,
        None,
        ["--task", "sst2", "--text-column", "x", "--regression"],
        ["--text-column, --regression describe --train/--dev files, and task sst2 has its own"],
    ),
    ("name-without-train", None, None, ["--name", "x"], ["--name describes", "drop it"]),
    ("name-not-a-directory", "train", "dev", ["--name", "a/b"], ["--name must be letters"]),
    ("abbreviated-option", "train", "dev", ["--max-len", "8"], ["did you mean --max-length?"]),
    ("unknown-pooling", "train", "dev", ["--pooling", "nope"], ["--pooling: invalid choice"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case, files, tiny_bert, tmp_path, capsys):
    _, train, dev, extra, fragments = case
    argv = train_argv(files, tiny_bert, tmp_path / "out", train, dev, *extra)
    code, out, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, *fragments)
    assert out == ""
    assert not (tmp_path / "out" / "metrics.json").exists()


@pytest.mark.parametrize(
    "model, fragments",
    [
        ("/nonexistent/model", ["model directory /nonexistent/model does not exist"]),
        (
            "no_tokenizer",
            ["no tokenizer files for", "save them there with tokenizer.save_pretrained"],
        ),
        ("no_config", ["not a Hugging Face model directory (no config.json)"]),
        ("no_weights", ["no file named model.safetensors", "the directory needs the weights"]),
        ("no-such-org/no-such-model", ["network connection"]),  # the tests run offline
    ],
    ids=["missing-dir", "no-tokenizer", "no-config", "no-weights", "unreachable-hub-name"],
)
def test_bad_model(model, fragments, files, tmp_path, capsys):
    argv = ["train", "--out", str(tmp_path / "out"), "--model", files.get(model, model)]
    argv += ["--train", files["train"], "--dev", files["dev"], *QUICK]
    assert_one_line_error(*run_cli(argv, capsys)[::2], *fragments)


@pytest.mark.parametrize("command", ["train", "analyze"])
def test_an_unreachable_hub_is_one_line_at_once(command, files, tmp_path, monkeypatch, capfd):
    """Online without a network, a hub name is one request and one line: not a minute of
    transformers' retries, each printed (as `isobn train --model bert-base-uncased` did)."""
    import huggingface_hub
    from huggingface_hub import constants

    calls = []

    def unreachable(url, timeout=None, **kwargs):
        calls.append(url)
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(constants, "is_offline_mode", lambda: False, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", unreachable)
    out = tmp_path / "out"
    argv = [command, "--out", str(out), "--model", "no-such-org/no-such-model"]
    argv += ["--train", files["train"], "--dev", files["dev"]]
    argv += QUICK if command == "train" else ["--max-examples", "8"]
    assert main(argv) == 2
    assert capfd.readouterr().err.splitlines() == [
        f"isobn {command}: error: model no-such-org/no-such-model is not in the Hugging Face "
        "cache and was not found on the hub (ConnectionError: [Errno -2] Name or service not "
        "known): check the name and the network, or pass `minilm` or a local model directory"
    ]
    assert len(calls) == 1 and not out.exists()


def test_unwritable_out(files, tiny_bert, capsys):
    out = Path(files["a_file"]) / "run"  # under a regular file: no directory can be made
    code, _, err = run_cli(train_argv(files, tiny_bert, out), capsys)
    assert_one_line_error(code, err, "cannot write to output directory", "choose a writable --out")


def test_diverging_loss_is_one_line(files, tiny_bert, tmp_path, capsys):
    argv = train_argv(files, tiny_bert, tmp_path, "train", "dev", "--lr", "1e30")
    code, _, err = run_cli(argv, capsys)
    # training had started (progress bars, cleared with carriage returns): the error is the
    # last line, a line of its own
    assert "Traceback" not in err and err.endswith("\n")
    shown = err.rstrip("\n").split("\n")[-1].split("\r")[-1]
    assert_one_line_error(code, shown, "non-finite loss nan", "lower --lr")


def test_missing_out_is_an_argparse_error(files, tiny_bert, capsys):
    code, _, err = run_cli(["train", "--model", tiny_bert, "--train", files["train"]], capsys)
    assert_one_line_error(code, err, "the following arguments are required: --out")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_bert, files) -> Path:
    """A finished run whose training file has a 200,000-character line (it must succeed)."""
    d = tmp_path_factory.mktemp("finished")
    rows = sentiment_rows(16, 0)
    rows[3]["text"] = ("good movie " * 20_000)[:200_000]
    train = write_csv(d / "long.csv", rows)
    out = d / "run"
    argv = ["train", "--out", str(out), "--model", tiny_bert, "--train", train]
    argv += ["--dev", files["dev"], *QUICK, "--save-every-steps", "1"]
    assert main(argv) == 0
    return out


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_very_long_line_trains(finished_run):
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert metrics["dev"]["accuracy"] >= 0.0 and (finished_run / "best").is_dir()


def test_failing_reinvocation_keeps_a_finished_run(finished_run, files, tiny_bert, capsys):
    before = snapshot(finished_run)
    config = json.loads((finished_run / "config.json").read_text())
    same = ["--train", config["train_file"], "--dev", config["dev_file"]]
    base = ["train", "--out", str(finished_run), "--model", tiny_bert, *QUICK]
    for extra, fragment in [
        (["--lr", "-1", *same], "--lr must be > 0"),
        ([*same, "--resume"], None),
        # its result is not the result of other settings
        (["--train", files["latin1"], "--dev", files["dev"], "--resume"], "other settings"),
        (same, "holds a finished run (metrics.json)"),  # a fresh run would overwrite it
        (["--train", files["latin1"], "--dev", files["dev"]], "holds a finished run"),
    ]:
        code, out, err = run_cli(base + extra, capsys)
        if fragment is None:  # --resume into a finished run of these settings: its result
            assert code == 0 and json.loads(out)["dev"] == config_dev(finished_run)
        else:
            assert_one_line_error(code, err, fragment)
    assert snapshot(finished_run) == before


def config_dev(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())["dev"]


def _experiment_registered(capsys) -> bool:
    assert main([]) == 0  # `isobn` alone prints the help
    return "experiment" in capsys.readouterr().out


def test_malformed_shard(capsys):
    if not _experiment_registered(capsys):
        pytest.skip("`isobn experiment` is not registered in this build")
    for shard, fragment in [("3/2", "K must be between 1 and N"), ("x", "malformed --shard")]:
        code, _, err = run_cli(["experiment", "--out", "unused", "--shard", shard], capsys)
        assert_one_line_error(code, err, fragment, prefix="isobn experiment: error: ")


def test_experiment_settings_are_one_line(files, capsys):
    if not _experiment_registered(capsys):
        pytest.skip("`isobn experiment` is not registered in this build")
    base = ["experiment", "--out", "unused"]
    for extra, fragment in [
        (["--methods", "none,nope"], "unknown method 'nope' in --methods"),
        (["--methods", "isobn:beta=0.5,isobn"], "names a method twice"),
        (["--tasks", "mr,trec", "--train", files["train"], "--dev", files["dev"]], "drop one"),
        (["--task", "trec"], "unrecognized arguments: --task trec; did you mean --tasks?"),
        (["--tasks", ""], "--tasks is empty"),
        (["--tasks", "nope"], "unknown task 'nope'"),
        (["--tasks", "sst2,SST-2"], "--tasks names a task twice: sst2,SST-2 is sst2, sst2"),
        (["--tasks", "trec", "--test", files["dev"]], "--test describes --train/--dev files"),
        (["--name", "x"], "--name describes --train/--dev files"),
        (["--methods", ""], "--methods is empty"),
        (["--isobn-beta", "-1"], "did you mean --methods isobn:beta=X?"),
        (["--norms", "none"], "did you mean --methods?"),
    ]:
        code, _, err = run_cli(base + extra, capsys)
        assert_one_line_error(code, err, fragment, prefix="isobn experiment: error: ")


def test_missing_tracker_is_one_line(files, tiny_bert, tmp_path, capsys):
    from accelerate.utils import is_tensorboard_available

    if is_tensorboard_available():
        pytest.skip("tensorboard is installed")
    argv = train_argv(
        files, tiny_bert, tmp_path / "out", "train", "dev", "--report-to", "tensorboard"
    )
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(
        code, err, "--report-to tensorboard needs tensorboard", "isobn[tensorboard]"
    )


def test_real_subprocesses(files, tiny_bert, tmp_path, capsys):
    """A few cases through `python -m isobn.cli.main`: the real stderr and exit status."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONWARNINGS="ignore")
    cases = {
        "argparse": (train_argv(files, tiny_bert, tmp_path / "a", "train", "dev", "--pooling",
                                "x"), "--pooling: invalid choice"),
        "data": (train_argv(files, tiny_bert, tmp_path / "c", "latin1", "dev"),
                 "not valid UTF-8"),
        "model": (train_argv(files, files["no_tokenizer"], tmp_path / "d"),
                  "no tokenizer files for"),
    }  # fmt: skip
    if _experiment_registered(capsys):
        shard = ["experiment", "--out", str(tmp_path / "e"), "--shard", "3/2"]
        cases["shard"] = (shard, "K must be between 1 and N")
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", "isobn.cli.main", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name, (argv, _) in cases.items()
    }
    for name, process in processes.items():
        _, err = process.communicate(timeout=300)
        prefix = f"isobn {cases[name][0][0]}: error: "
        assert_one_line_error(process.returncode, err, cases[name][1], prefix=prefix)


def test_damaged_study_cell_record_is_one_line(files, tiny_bert, tmp_path, capsys):
    study = tmp_path / "study.toml"
    study.write_text(
        f'[study]\nname = "s"\nmodel = "{tiny_bert}"\n'
        f'[tasks.sent]\ntrain_file = "{files["train"]}"\ndev_file = "{files["dev"]}"\n'
        '[[block]]\nname = "main"\ntasks = ["sent"]\nsizes = [8]\nmethods = ["none"]\n'
        "seeds = [1]\n"
    )
    record = tmp_path / "out" / "cells" / "sent" / "n8" / "none" / "seed1.json"
    record.parent.mkdir(parents=True)
    record.write_text("[]")
    argv = ["study", str(study), "--out", str(tmp_path / "out"), "--report-only"]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(
        code,
        err,
        f"{record} is damaged (holds list",
        "delete it to run that cell again",
        prefix="isobn study: error: ",
    )
