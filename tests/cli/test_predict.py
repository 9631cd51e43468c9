"""`isobn predict` holds train's contract: bad rows, a bad --output, an empty input or a
--max-length beyond the model give one line on stderr and exit 2, before any inference; text
input gives one prediction per non-blank line, in input order; --output is written atomically,
in the format its extension names. The model reads what it was trained on: the columns and max
length its isobn_model.json records (older checkpoints: the run's config.json).

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
    from isobn.training.model import ModelConfig, build_model, save_checkpoint
    from isobn.training.pretrained import load_tokenizer

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
    assert_one_line_error(code, err, "is a directory, not a data file")


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

    def fail_midway(handle, records, fmt):
        handle.write("partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(predict, "_write", fail_midway)
    code, _, err = run_predict(run_dir, texts, capsys, "--output", str(target))
    assert_one_line_error(
        code, err, "no space left on ", f"writing {target}: free space or choose another --output"
    )
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
    from isobn.training.pretrained import load_encoder_config, load_tokenizer

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
    texts = write(tmp_path, "texts.txt", "\n".join(lines) + "\n\n  \n\u200b\u200f\ufeff\nawful\n")
    with caplog.at_level(logging.WARNING):
        code, out, err = run_predict(run_dir, texts, capsys, "--batch-size", "2")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    expected = [line.removesuffix("\r") for line in lines] + ["awful"]
    assert [r["text"] for r in rows] == expected
    assert "skipped blank line(s) 8, 9, 10; there is one prediction per non-blank" in caplog.text
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


# ---------------------------------------------------------------------------------------------
# What the model was trained with: columns, pairs and max length from isobn_model.json


@pytest.fixture(scope="module")
def pair_checkpoint(tmp_path_factory, tiny_bert) -> Path:
    """A pair model's best/ alone (copied away from its run: no config.json beside it)."""
    from isobn.training.model import ModelConfig, build_model, save_checkpoint
    from isobn.training.pretrained import load_tokenizer

    best = tmp_path_factory.mktemp("pair-model") / "copied-best"
    config = ModelConfig(
        encoder=tiny_bert, num_labels=2, label_names=["different", "same"], pooling="cls",
        text_column="premise", text_pair_column="hypothesis", max_length=12,
    )  # fmt: skip
    save_checkpoint(build_model(config), load_tokenizer(tiny_bert), best)
    return best


@pytest.fixture
def encode_spy(monkeypatch):
    """Records (texts, pairs, max_length) of each call of isobn.training.data.encode."""
    from isobn.training import data

    calls, real = [], data.encode

    def spy(examples, tokenizer, max_length, regression):
        calls.append(([e.text for e in examples], [e.text_pair for e in examples], max_length))
        return real(examples, tokenizer, max_length, regression)

    monkeypatch.setattr(data, "encode", spy)
    return calls


def test_a_pair_model_reads_its_columns_and_max_length(
    tmp_path, pair_checkpoint, capsys, encode_spy
):
    rows = [{"premise": "the word is good", "hypothesis": "it is good", "id": 1}]
    data = write(tmp_path, "pairs.jsonl", jsonl(rows))
    code, out, err = run_predict(pair_checkpoint, data, capsys)
    assert code == 0, err
    [record] = [json.loads(line) for line in out.splitlines()]
    assert record["text"] == "the word is good" and record["text_pair"] == "it is good"
    assert encode_spy == [(["the word is good"], ["it is good"], 12)]
    # a flag still overrides what the checkpoint says
    assert run_predict(pair_checkpoint, data, capsys, "--max-length", "20")[0] == 0
    assert encode_spy[-1][2] == 20


def test_a_pair_model_refuses_single_texts(tmp_path, pair_checkpoint, capsys, no_inference):
    texts = write(tmp_path, "texts.txt", "the word is good\n")
    code, _, err = run_predict(pair_checkpoint, texts, capsys)
    assert_one_line_error(
        code, err, "trained on text pairs (columns 'premise' and 'hypothesis')",
        "texts.txt holds single texts", "pass a .csv, .tsv or .jsonl file with both columns",
    )  # fmt: skip
    only_premise = write(tmp_path, "premise.csv", "premise\nthe word is good\n")
    code, _, err = run_predict(pair_checkpoint, only_premise, capsys)
    assert_one_line_error(code, err, "has no column 'hypothesis'", "--text-pair-column")


def test_a_pair_column_flag_refuses_single_texts(tmp_path, run_dir, capsys, no_inference):
    """A checkpoint that does not record its inputs: the flag asks for pairs."""
    texts = write(tmp_path, "texts.txt", "good\n")
    code, _, err = run_predict(run_dir, texts, capsys, "--text-pair-column", "b")
    assert_one_line_error(code, err, "--text-pair-column asks for text pairs (columns 'text'")


def test_a_single_text_model_refuses_a_pair_column(tmp_path, tiny_bert, capsys, no_inference):
    from isobn.training.model import ModelConfig, build_model, save_checkpoint
    from isobn.training.pretrained import load_tokenizer

    best = tmp_path / "best"
    config = ModelConfig(
        encoder=tiny_bert, num_labels=2, pooling="cls", text_column="review", max_length=8
    )
    save_checkpoint(build_model(config), load_tokenizer(tiny_bert), best)
    capsys.readouterr()  # the weights' loading bar
    data = write(tmp_path, "rows.csv", "review,other\ngood,bad\n")
    code, _, err = run_predict(best, data, capsys, "--text-pair-column", "other")
    assert_one_line_error(
        code, err, "trained on single texts (column 'review')", "drop --text-pair-column"
    )


def test_a_checkpoint_without_the_new_keys_falls_back_to_the_run_config(
    tmp_path, run_dir, capsys, encode_spy
):
    """isobn_model.json written before the columns and max length were recorded: predict
    reads the run's config.json (text column, max length 16), then the defaults."""
    import shutil

    old = tmp_path / "run"
    shutil.copytree(run_dir, old)
    config_file = old / "best" / "isobn_model.json"
    values = json.loads(config_file.read_text())
    for key in ("text_column", "text_pair_column", "max_length"):
        values.pop(key)
    config_file.write_text(json.dumps(values))
    texts = write(tmp_path, "texts.txt", "good\n")
    assert run_predict(old, texts, capsys)[0] == 0
    assert encode_spy[-1][2] == 16  # config.json's
    (old / "config.json").unlink()
    assert run_predict(old, texts, capsys)[0] == 0
    assert encode_spy[-1][2] == 128  # the default


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"max_length": 0}, "max_length is 0, not a positive integer"),
        ({"text_column": ""}, "text_column is '', not a column name"),
        ({"text_column": None, "text_pair_column": "b"}, "text_pair_column without text_column"),
    ],
)
def test_unusable_recorded_inputs_are_a_damaged_checkpoint(
    tmp_path, pair_checkpoint, capsys, no_inference, change, fragment
):
    import shutil

    best = tmp_path / "best"
    shutil.copytree(pair_checkpoint, best)
    values = json.loads((best / "isobn_model.json").read_text())
    (best / "isobn_model.json").write_text(json.dumps(values | change))
    data = write(tmp_path, "pairs.jsonl", jsonl([{"premise": "a", "hypothesis": "b"}]))
    code, _, err = run_predict(best, data, capsys)
    assert_one_line_error(code, err, f"isobn_model.json is damaged ({fragment})")


# ---------------------------------------------------------------------------------------------
# --output: the extension names the format


def test_the_output_extension_names_the_format(tmp_path, pair_checkpoint, capsys):
    rows = [{"premise": '"Best" film, ever', "hypothesis": "it is good"},
            {"premise": "the word is bad", "hypothesis": "it is bad"}]  # fmt: skip
    data = write(tmp_path, "pairs.jsonl", jsonl(rows))
    outputs = {}
    for suffix in (".jsonl", ".json", ".csv", ".tsv", ".NDJSON"):
        target = tmp_path / f"out{suffix}"
        code, _, err = run_predict(pair_checkpoint, data, capsys, "--output", str(target))
        assert code == 0, err
        outputs[suffix] = target.read_text(encoding="utf-8")
    lines = [json.loads(line) for line in outputs[".jsonl"].splitlines()]
    assert json.loads(outputs[".json"]) == lines  # one array of the same records
    assert outputs[".NDJSON"] == outputs[".jsonl"]
    from isobn.tasks import read_rows

    for suffix in (".csv", ".tsv"):  # isobn reads its own output back as written
        back = [row for _, row in read_rows(tmp_path / f"out{suffix}", ["text", "label"])]
        assert back == [
            {"text": r["text"], "text_pair": r["text_pair"], "label": r["label"]} for r in lines
        ]
    assert outputs[".tsv"].splitlines()[1].startswith('"Best" film, ever\tit is good\t')


@pytest.mark.parametrize("name", ["out.txt", "out", "out.xlsx"])
def test_an_unknown_output_extension_is_refused(tmp_path, run_dir, capsys, no_inference, name):
    texts = write(tmp_path, "texts.txt", "good\n")
    code, _, err = run_predict(run_dir, texts, capsys, "--output", str(tmp_path / name))
    assert_one_line_error(code, err, "unknown format", ".jsonl (JSON lines), .json", ".tsv")
    assert not (tmp_path / name).exists()


def test_a_tab_in_a_text_is_refused_for_tsv_before_inference(
    tmp_path, run_dir, capsys, no_inference
):
    data = write(tmp_path, "rows.jsonl", jsonl([{"text": "good"}, {"text": "a\tb"}]))
    code, _, err = run_predict(run_dir, data, capsys, "--output", str(tmp_path / "out.tsv"))
    assert_one_line_error(code, err, "input row 2 holds a tab or a line break", ".csv or .jsonl")


def test_train_then_predict_from_a_copied_best_keeps_columns_length_and_labels(
    tmp_path, tiny_bert, capsys, encode_spy
):
    """End to end: the labels 007, 7, 070, +7 stay four classes and are printed as written;
    a best/ copied away from its run reads column 'review' with max length 20."""
    import shutil

    from conftest import QUICK_ARGS

    labels = ["007", "7", "070", "+7"]
    rows = "".join(f"the film {w} {i},{labels[i % 4]}\n" for i, w in enumerate(["good"] * 16))
    data = write(tmp_path, "train.csv", "review,label\n" + rows)
    out = tmp_path / "run"
    argv = ["train", "--model", tiny_bert, "--train", data, "--dev", data, "--out", str(out)]
    argv += [*QUICK_ARGS, "--max-length", "20", "--text-column", "review", "--pooling", "cls"]
    assert main(argv) == 0
    recorded = json.loads((out / "best" / "isobn_model.json").read_text())
    assert recorded["label_names"] == ["+7", "007", "070", "7"]
    assert (recorded["text_column"], recorded["text_pair_column"]) == ("review", None)
    assert recorded["max_length"] == 20
    copied = shutil.copytree(out / "best", tmp_path / "elsewhere" / "model")
    capsys.readouterr()
    code, output, err = run_predict(copied, data, capsys)
    assert code == 0, err
    predicted = [json.loads(line) for line in output.splitlines()]
    assert len(predicted) == 16 and {r["label"] for r in predicted} <= set(labels)
    assert list(predicted[0]["probabilities"]) == ["+7", "007", "070", "7"]
    assert encode_spy[-1][2] == 20


def test_a_text_the_tokenizer_drops_is_skipped_in_text_files_as_a_blank_line_is(
    tmp_path, run_dir, capsys, caplog
):
    """U+FFFD and private-use characters become no token for BERT (train refuses such rows): a
    .txt line of them is skipped with a warning naming it, as a blank line is, not predicted
    as the same empty input."""
    texts = write(tmp_path, "texts.txt", "good\n\ufffd\nbad\n\ue000\ue001\nfine\n")
    with caplog.at_level(logging.WARNING):
        code, out, err = run_predict(run_dir, texts, capsys)
    assert code == 0, err
    assert [json.loads(line)["text"] for line in out.splitlines()] == ["good", "bad", "fine"]
    warned = [r.getMessage() for r in caplog.records if "no token" in r.getMessage()]
    assert warned == [
        f"{texts}: skipped line(s) 2, 4, which become no token at all (e.g. '\ufffd' "
        "(U+FFFD)): the model's tokenizer drops every character of them; there is one "
        "prediction per other line"
    ]
    only = write(tmp_path, "only.txt", "\ufffd\n")
    code, _, err = run_predict(run_dir, only, capsys)
    assert_one_line_error(code, err, "holds no texts the model's tokenizer keeps")


@pytest.mark.parametrize("name", ["rows.csv", "rows.jsonl"])
def test_a_text_the_tokenizer_drops_is_refused_in_row_files_as_an_empty_text_is(
    tmp_path, run_dir, capsys, name
):
    rows = [{"text": "good"}, {"text": "\ufffd"}]
    content = "text\ngood\n\ufffd\n" if name.endswith(".csv") else jsonl(rows)
    path = write(tmp_path, name, content)
    code, out, err = run_predict(run_dir, path, capsys)
    line = 3 if name.endswith(".csv") else 2
    assert_one_line_error(
        code, err, f"{path} line {line}: the text in column 'text' becomes no token at all "
        "('\ufffd' (U+FFFD)): the model's tokenizer drops every character of it; fill or "
        "drop the row",
    )  # fmt: skip
    assert out == ""


def test_a_second_text_the_tokenizer_drops_is_refused(tmp_path, pair_checkpoint, capsys):
    rows = [{"premise": "it is good", "hypothesis": "good"},
            {"premise": "it is bad", "hypothesis": "\ue000"}]  # fmt: skip
    path = write(tmp_path, "pairs.jsonl", jsonl(rows))
    code, _, err = run_predict(pair_checkpoint, path, capsys)
    assert_one_line_error(code, err, f"{path} line 2: the text in column 'hypothesis'")


def test_a_classifier_directory_that_does_not_load_is_one_line(tmp_path, tiny_bert, capsys):
    """A save_pretrained classifier whose weights do not fit its config.json: transformers'
    RuntimeError (and its load report) was a traceback in predict and export."""
    import transformers as T

    directory = tmp_path / "classifier"
    model = T.BertForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    model.save_pretrained(directory)
    T.AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(directory)
    config = json.loads((directory / "config.json").read_text())
    config["id2label"] = {str(i): f"c{i}" for i in range(3)}  # 3 labels, a head of 2
    config["label2id"] = {f"c{i}": i for i in range(3)}
    (directory / "config.json").write_text(json.dumps(config))
    texts = write(tmp_path, "texts.txt", "good\n")
    capsys.readouterr()
    for argv in (["predict", "--checkpoint", str(directory), "--input", texts],
                 ["export", str(directory), "--out", str(tmp_path / "out")]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err  # transformers' bar of the weights it read, then:
        assert "Traceback" not in err and "LOAD REPORT" not in err, err
        assert err.splitlines()[-1] == (
            f"isobn {argv[0]}: error: cannot load the classifier in {directory}: its weights "
            "do not fit its config.json; save it there again with save_pretrained"
        )
