"""`isobn predict` holds train's contract: bad rows, a bad --output, an empty input or a
--max-length beyond the model give one line on stderr and exit 2, before any inference; text
input gives one prediction per non-blank line, in input order; --output is written atomically.

The checkpoint is the tiny BERT with a fresh head, saved as `isobn train` saves one (no
training: these tests check the contract, not the predictions).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import jsonl, write  # the data-file helpers of the task tests
from test_cli_errors import assert_one_line_error as one_line_error

from isobn.cli import predict
from isobn.cli.main import main

ERROR = "isobn predict: error: "


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_bert) -> Path:
    """A run directory: best/ (the checkpoint) and config.json (text column, max length)."""
    from isobn.training.model import ModelConfig, build_model, load_tokenizer, save_checkpoint

    out = tmp_path_factory.mktemp("predict-run")
    config = ModelConfig(encoder=tiny_bert, num_labels=2, label_names=["neg", "pos"], pooling="cls")
    save_checkpoint(build_model(config), load_tokenizer(tiny_bert), out / "best")
    (out / "config.json").write_text(json.dumps({"text_column": "text", "max_length": 16}))
    return out


def run_predict(run_dir: Path, input_path: str, capsys, *extra: str) -> tuple[int, str, str]:
    argv = ["predict", "--checkpoint", str(run_dir), "--input", input_path, *extra]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *fragments: str) -> str:
    return one_line_error(code, err, *fragments, prefix=ERROR)


@pytest.fixture
def no_inference(monkeypatch):
    """Fail the test if the checkpoint is loaded: the error must come before inference."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded although the input or output is bad")

    monkeypatch.setattr("isobn.training.model.load_checkpoint", refuse)


# ---------------------------------------------------------------------------------------------
# Rows: train's checks, with the file and the line


@pytest.mark.parametrize(
    ("name", "content", "fragments"),
    [
        ("null.jsonl", jsonl([{"text": "good"}, {"text": None}]),
         ["null.jsonl line 2: column 'text' holds null, not text", "fix or drop the row"]),
        ("object.jsonl", jsonl([{"text": {"x": 1}}]),
         ["object.jsonl line 1: column 'text' holds dict, not text"]),
        ("list.jsonl", jsonl([{"text": "good"}, {"text": ["a"]}]),
         ["list.jsonl line 2: column 'text' holds list"]),
        ("empty.jsonl", jsonl([{"text": "good"}, {"text": "good"}, {"text": " "}]),
         ["empty.jsonl line 3: empty text in column 'text'", "fill or drop the row"]),
        ("empty.csv", "text\ngood\n\"\"\n", ["empty.csv line 3: empty text in column 'text'"]),
        ("nokey.jsonl", jsonl([{"text": "good"}, {"sentence": "bad"}]),
         ["nokey.jsonl line 2: no column 'text'; available columns: sentence", "--text-column"]),
        ("columns.csv", "sentence\ngood\n",
         ["has no column 'text'; available columns: sentence", "--text-column"]),
        ("bad.jsonl", '{"text": "good"}\n{"text": \n',
         ["bad.jsonl line 2: invalid JSON", "fix the line"]),
        ("array.jsonl", '["good"]\n', ["line 1: expected a JSON object {...}, got list"]),
        ("latin1.txt", "caf\xe9 good\n".encode("latin-1"),
         ["not valid UTF-8 (byte 0xe9 on line 1)", "iconv"]),
        ("data.xlsx", "whatever", ["unsupported file type '.xlsx'", ".txt", ".jsonl"]),
    ],
)  # fmt: skip
def test_bad_rows_are_refused_like_train(
    tmp_path, run_dir, capsys, no_inference, name, content, fragments
):
    code, out, err = run_predict(run_dir, write(tmp_path, name, content), capsys)
    assert_one_line_error(code, err, *fragments)
    assert out == ""


def test_json_numbers_are_text_as_in_train(tmp_path, run_dir, capsys):
    data = write(tmp_path, "numbers.jsonl", jsonl([{"text": 7}, {"text": "good"}]))
    code, out, err = run_predict(run_dir, data, capsys)
    assert code == 0, err
    assert [json.loads(line)["text"] for line in out.splitlines()] == ["7", "good"]


# ---------------------------------------------------------------------------------------------
# Empty and missing input


@pytest.mark.parametrize(
    ("name", "content", "fragments"),
    [
        ("empty.txt", "", ["empty.txt holds no texts", "one text per line"]),
        ("blank.txt", "\n  \n\n", ["blank.txt holds no texts"]),
        ("noext", "", ["noext holds no texts"]),
        ("empty.csv", "", ["empty.csv is empty", "header row"]),
        ("header.csv", "text\n", ["header.csv has no examples, only a header", "add rows"]),
        ("empty.jsonl", "\n\n", ["empty.jsonl is empty"]),
        ("empty.json", "[]", ["empty.json has no examples"]),
    ],
)
def test_empty_input_is_one_line(tmp_path, run_dir, capsys, no_inference, name, content, fragments):
    code, _, err = run_predict(run_dir, write(tmp_path, name, content), capsys)
    assert_one_line_error(code, err, *fragments)


def test_missing_input_and_directory_input(tmp_path, run_dir, capsys, no_inference):
    code, _, err = run_predict(run_dir, str(tmp_path / "nope.txt"), capsys)
    assert_one_line_error(code, err, "file not found", "nope.txt", "check the path")
    code, _, err = run_predict(run_dir, str(tmp_path), capsys)
    assert_one_line_error(code, err, "is a directory, not a file")


# ---------------------------------------------------------------------------------------------
# --output: checked first, written atomically


def test_output_in_a_missing_folder_is_refused_before_inference(
    tmp_path, run_dir, capsys, no_inference
):
    texts = write(tmp_path, "texts.txt", "good\n")
    target = tmp_path / "missing" / "out.jsonl"
    code, _, err = run_predict(run_dir, texts, capsys, "--output", str(target))
    assert_one_line_error(code, err, f"--output {target}: folder", "does not exist", "create it")
    assert not target.parent.exists()


def test_output_that_is_a_directory_or_the_input_is_refused(
    tmp_path, run_dir, capsys, no_inference
):
    texts = write(tmp_path, "texts.txt", "good\n")
    code, _, err = run_predict(run_dir, texts, capsys, "--output", str(tmp_path))
    assert_one_line_error(code, err, "is a directory", "pass a file path")
    code, _, err = run_predict(run_dir, texts, capsys, "--output", texts)
    assert_one_line_error(code, err, "is the --input file", "choose another --output")
    assert Path(texts).read_text() == "good\n"
    blocker = write(tmp_path, "a-file", "x")
    code, _, err = run_predict(run_dir, texts, capsys, "--output", f"{blocker}/out.jsonl")
    assert_one_line_error(code, err, "is not a folder")


def test_output_is_replaced_atomically(tmp_path, run_dir, capsys, monkeypatch):
    texts = write(tmp_path, "texts.txt", "good\nbad\n")
    target = tmp_path / "out.jsonl"
    target.write_text("previous predictions\n")
    # a failure while writing leaves the previous file and no temporary file
    real_write = predict._write

    def fail_midway(handle, records, csv_format):
        handle.write("partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(predict, "_write", fail_midway)
    code, _, err = run_predict(run_dir, texts, capsys, "--output", str(target))
    assert_one_line_error(code, err, f"cannot write --output {target}", "No space left")
    assert target.read_text() == "previous predictions\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "texts.txt"]
    monkeypatch.setattr(predict, "_write", real_write)
    assert run_predict(run_dir, texts, capsys, "--output", str(target))[0] == 0
    assert len(target.read_text().splitlines()) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "texts.txt"]


def test_bad_input_leaves_an_existing_output_alone(tmp_path, run_dir, capsys, no_inference):
    target = tmp_path / "out.csv"
    target.write_text("text,label\nold,pos\n")
    bad = write(tmp_path, "bad.jsonl", jsonl([{"text": None}]))
    code, _, err = run_predict(run_dir, bad, capsys, "--output", str(target))
    assert_one_line_error(code, err, "holds null")
    assert target.read_text() == "text,label\nold,pos\n"


# ---------------------------------------------------------------------------------------------
# --max-length: train's check


@pytest.mark.parametrize(
    ("value", "fragments"),
    [
        (
            "5000",
            ["--max-length 5000 exceeds the 256 positions of", "use --max-length 256 or less"],
        ),
        ("2", ["--max-length 2 leaves no room for text", "use --max-length 3 or more"]),
        ("0", ["--max-length must be a positive integer, got 0"]),
    ],
)
def test_max_length_beyond_the_model_is_one_line(tmp_path, run_dir, capsys, value, fragments):
    texts = write(tmp_path, "texts.txt", "good\n")
    code, out, err = run_predict(run_dir, texts, capsys, "--max-length", value)
    assert_one_line_error(code, err, *fragments)
    assert out == ""


def test_max_length_message_is_trains(tiny_bert):
    """The same function gives train's and predict's message (train passes --model)."""
    from isobn.errors import UserError
    from isobn.training.max_length import check_max_length
    from isobn.training.model import load_encoder_config, load_tokenizer

    tokenizer, config = load_tokenizer(tiny_bert), load_encoder_config(tiny_bert)
    with pytest.raises(UserError) as e:
        check_max_length(300, tiny_bert, tokenizer, config, pairs=False)
    assert str(e.value) == (
        f"--max-length 300 exceeds the 256 positions of {tiny_bert}; use --max-length 256 or less"
    )
    with pytest.raises(UserError, match="use --max-length 5 or more"):
        check_max_length(4, tiny_bert, tokenizer, config, pairs=True)  # [CLS] a [SEP] b [SEP]
    check_max_length(256, tiny_bert, tokenizer, config, pairs=True)


# ---------------------------------------------------------------------------------------------
# Text input: one prediction per non-blank line, in order


def test_one_prediction_per_line_in_input_order(tmp_path, run_dir, capsys, caplog):
    lines = [
        "good",
        "the movie was very good and the cast was great and the plot was fine",
        "page\x0cbreak",  # str.splitlines() would cut these three lines in two
        "line\u2028separator",
        "group\x1dseparator",
        "windows line end\r",
        "bad",
    ]
    texts = write(tmp_path, "texts.txt", "\n".join(lines) + "\n\n  \nawful\n")
    with caplog.at_level(logging.WARNING):
        code, out, err = run_predict(run_dir, texts, capsys, "--batch-size", "2")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    expected = [line.removesuffix("\r") for line in lines] + ["awful"]
    assert [r["text"] for r in rows] == expected
    assert "skipped blank line(s) 8, 9; there is one prediction per non-blank" in caplog.text
    # each prediction belongs to its own line: the same as predicting the lines reversed
    reversed_file = write(tmp_path, "reversed.txt", "\n".join(reversed(expected)))
    code, out, err = run_predict(run_dir, reversed_file, capsys, "--batch-size", "3")
    assert code == 0, err
    again = [json.loads(line) for line in out.splitlines()][::-1]
    assert [r["text"] for r in again] == expected
    for first, second in zip(rows, again, strict=True):
        assert first["label"] == second["label"]
        assert first["probabilities"] == pytest.approx(second["probabilities"], abs=1e-5)


def test_no_final_newline_and_csv_output(tmp_path, run_dir, capsys):
    texts = write(tmp_path, "texts", "good\nbad")  # no suffix: a text file
    target = tmp_path / "out.csv"
    code, _, err = run_predict(run_dir, texts, capsys, "--output", str(target))
    assert code == 0, err
    lines = target.read_text().splitlines()
    assert lines[0] == "text,label" and [line.split(",")[0] for line in lines[1:]] == [
        "good",
        "bad",
    ]


def test_malformed_run_config_is_one_line(tmp_path, run_dir, capsys, no_inference):
    import shutil

    broken = tmp_path / "run"
    shutil.copytree(run_dir, broken)
    (broken / "config.json").write_text('{"text_column": ')
    texts = write(tmp_path, "texts.txt", "good\n")
    code, _, err = run_predict(broken, texts, capsys)
    assert_one_line_error(code, err, "config.json", "pass --text-column and --max-length")


@pytest.mark.parametrize(
    ("settings", "fragments"),
    [
        ({"max_length": "abc"}, ["config.json has max_length 'abc'", "pass --max-length"]),
        ({"max_length": 0}, ["config.json has max_length 0", "pass --max-length"]),
        ({"text_column": ["a"]}, ["config.json has text_column ['a']", "pass --text-column"]),
    ],
)
def test_unusable_run_settings_are_one_line(tmp_path, run_dir, capsys, settings, fragments):
    import shutil

    broken = tmp_path / "run"
    shutil.copytree(run_dir, broken)
    (broken / "config.json").write_text(json.dumps({"text_column": "text"} | settings))
    texts = write(tmp_path, "texts.txt", "good\n")
    code, _, err = run_predict(broken, texts, capsys)
    assert_one_line_error(code, err, *fragments)
    flag = "--max-length" if "max_length" in settings else "--text-column"
    code, out, err = run_predict(broken, texts, capsys, flag, "16" if "max" in flag else "text")
    assert code == 0 and len(out.splitlines()) == 1, err


def test_output_through_a_symlink_replaces_its_target(tmp_path, run_dir, capsys):
    texts = write(tmp_path, "texts.txt", "good\n")
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "out.jsonl"
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    assert run_predict(run_dir, texts, capsys, "--output", str(link))[0] == 0
    assert link.is_symlink() and json.loads(target.read_text())["text"] == "good"


def test_real_process_prints_one_line_and_exits_2(tmp_path, run_dir):
    bad = write(tmp_path, "bad.jsonl", jsonl([{"text": "good"}, {"text": {"x": 1}}]))
    result = subprocess.run(
        [sys.executable, "-m", "isobn.cli.main", "predict", "--checkpoint", str(run_dir),
         "--input", bad, "--output", str(tmp_path / "out.jsonl")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"{ERROR}{bad} line 2: column 'text' holds dict, not text; fix or drop the row"
    ]
    assert not (tmp_path / "out.jsonl").exists()
