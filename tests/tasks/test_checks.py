"""One role per column (refused with one line), and the warnings about the splits: dev/test
rows that repeat training rows, a one-class dev split, constant regression targets."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import jsonl, write
from test_tasks import one_line_error

from isobn.errors import UserError
from isobn.tasks import load_files, metrics

TRAIN = "review,title,label\nthe film was good,A,pos\nthe film was bad,B,neg\nfine acting,C,pos\n"


def _load(tmp_path, train=TRAIN, dev=None, **columns):
    train_path = write(tmp_path, "train.csv", train)
    dev_path = write(tmp_path, "dev.csv", dev) if dev is not None else train_path
    args = {"text_column": "review", "label_column": "label"} | columns
    return load_files(train_path, dev_path, **args)


# ---------------------------------------------------------------------------------------------
# One role per column


@pytest.mark.parametrize(
    ("columns", "fragments"),
    [
        ({"label_column": "review"},
         ["the text column and the label column are both 'review'", "--label-column"]),
        ({"text_pair_column": "review"},
         ["the second-text column is the text column 'review'", "--text-pair-column"]),
        ({"text_pair_column": "label"},
         ["the second-text column is the label column 'label'", "--text-pair-column"]),
    ],
)  # fmt: skip
def test_a_column_with_two_roles_is_refused(tmp_path, columns, fragments):
    with pytest.raises(UserError) as e:
        _load(tmp_path, **columns)
    message = one_line_error(e)
    assert all(f in message for f in fragments), message


def test_a_label_column_that_copies_the_text_is_refused(tmp_path):
    # the texts repeat, so the labels repeat too: only the copy rule sees it
    train = "text,copy,label\ngood,good,pos\nbad,bad,neg\ngood,good,pos\n"
    with pytest.raises(UserError, match=r"label column 'copy' holds the text") as e:
        _load(tmp_path, train, text_column="text", label_column="copy")
    assert "every label equals the row's text" in one_line_error(e)
    pairs = "a,b,y\nx,good,good\nz,bad,bad\n"  # the label copies the second text
    with pytest.raises(UserError, match=r"label column 'y' holds the text"):
        _load(tmp_path, pairs, text_column="a", text_pair_column="b", label_column="y")


def test_a_label_column_of_sentences_is_refused(tmp_path):
    # the columns swapped: each "label" is a review, the "text" is the class
    with pytest.raises(UserError, match=r"label column 'review' holds texts, not classes") as e:
        _load(tmp_path, text_column="label", label_column="review")
    message = one_line_error(e)
    assert "3 values are all different and several words long" in message
    assert "(the text column is 'label': --text-column)" in message


def test_real_label_columns_pass(tmp_path):
    _load(tmp_path)  # pos/neg
    two_rows = write(tmp_path, "two.csv", "text,label\nhello,pos\nbye,neg\n")  # one per class
    assert load_files(two_rows, two_rows, text_column="text", label_column="label").num_labels == 2
    # multi-word class names that repeat
    named = "text,label\na,very good\nb,very bad\nc,very good\n"
    assert _load(tmp_path, named, text_column="text").label_names == ["very bad", "very good"]
    # some rows whose text is the label (a one-word review) are not a copy of the text
    some = "text,label\npos,pos\nit was bad,neg\n"
    assert _load(tmp_path, some, text_column="text").num_labels == 2


def test_the_cli_refuses_two_roles_with_one_line(tmp_path, capsys):
    from isobn.cli.main import main

    train = write(tmp_path, "train.csv", TRAIN)
    argv = ["train", "--train", train, "--dev", train, "--out", str(tmp_path / "run")]
    code = main([*argv, "--text-column", "label", "--label-column", "label"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "the text column and the label column are both 'label'" in err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


# ---------------------------------------------------------------------------------------------
# Warnings, one line each


def test_dev_rows_that_repeat_training_rows_are_counted(tmp_path, caplog):
    dev = "review,label\nthe film was good,pos\n new ,neg\nfine acting ,pos\n"
    with caplog.at_level(logging.WARNING):
        _load(tmp_path, dev=dev)
    [record] = [r for r in caplog.records if "repeat" in r.getMessage()]
    message = record.getMessage()
    assert "dev.csv: 2 of 3 dev rows repeat a training text" in message
    assert "\n" not in message and "remove them from the dev file" in message


def test_pairs_repeat_only_when_both_texts_do(tmp_path, caplog):
    rows = [{"a": "x", "b": "y", "l": 0}, {"a": "x", "b": "z", "l": 1}]
    train = write(tmp_path, "train.jsonl", jsonl(rows))
    dev = write(tmp_path, "dev.jsonl", jsonl([{"a": "x", "b": "w", "l": 0}, rows[1]]))
    with caplog.at_level(logging.WARNING):
        load_files(train, dev, text_column="a", text_pair_column="b", label_column="l")
    assert "1 of 2 dev rows repeat a training text" in caplog.text


def test_a_one_class_dev_split_is_warned_about(tmp_path, caplog):
    dev = "review,label\nnew one,pos\nanother,pos\n"
    with caplog.at_level(logging.WARNING):
        _load(tmp_path, dev=dev)
    assert "dev.csv: every dev row has label 'pos'" in caplog.text
    assert "accuracy 1.0" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _load(tmp_path, dev="review,label\nnew one,pos\nanother,neg\n")
    assert caplog.text == ""  # two classes, no repeated rows: nothing to say


def test_constant_regression_targets_are_warned_about_and_undefined(tmp_path, caplog):
    train = "review,score\na b,1.5\nc d,2.5\ne f,3\n"
    dev = "review,score\ng h,2\ni j,2.0\n"
    with caplog.at_level(logging.WARNING):
        task = _load(tmp_path, train, dev, label_column="score", regression=True)
    assert "dev.csv: every dev target is 2: Pearson and Spearman are undefined" in caplog.text
    scored = task.score({"dev": (np.array([1.0, 3.0]), np.array([2.0, 2.0]))})
    assert all(np.isnan(scored[k]) for k in ("pearson", "spearman", "pearson_spearman"))
    # constant predictions on varying targets: the model's fault, "no correlation"
    assert metrics.pearson([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]) == 0.0


# ---------------------------------------------------------------------------------------------
# Inputs that train a meaningless classifier: warned


def test_continuous_number_labels_are_warned_about_naming_regression(tmp_path, caplog):
    """48 distinct floats, one row each, become 48 classes unless --regression is passed."""
    rows = "".join(f"text number {i},{0.37 + i / 97:.4f}\n" for i in range(48))
    with caplog.at_level(logging.WARNING):
        task = _load(tmp_path, "review,label\n" + rows)
    assert task.num_labels == 48  # still trained as asked, with a warning
    assert "the label column 'label' holds numbers that are mostly different" in caplog.text
    assert "(48 values in 48 rows, e.g. '0.3700')" in caplog.text and "--regression" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _load(tmp_path, "review,label\n" + rows, regression=True)
        ratings = "".join(f"text {i},{i % 5}\n" for i in range(48))  # 5 classes: ordinary
        _load(tmp_path, "review,label\n" + ratings)
        words = "".join(f"text {i},class{i}\n" for i in range(48))  # not numbers
        _load(tmp_path, "review,label\n" + words)
    assert "mostly different" not in caplog.text and "spells one number" not in caplog.text


@pytest.mark.parametrize(
    "spell",
    [
        lambda i: f"{i}e-3",  # exponent
        lambda i: f" {i / 7:.3f} ",  # spaces around
        lambda i: f"-{i}.0" if i else "-0.0",  # negative zero among them
        lambda i: f"{i * 2.5}%",  # percentages
        lambda i: f'"0,{i:02d}"',  # a decimal comma, quoted in the CSV
        lambda i: str(i % 30),  # integers, 30 values in 48 rows: 1.6 rows per class
    ],
)
def test_continuous_labels_in_other_spellings_are_warned_about(tmp_path, caplog, spell):
    rows = "".join(f"text number {i},{spell(i)}\n" for i in range(48))
    with caplog.at_level(logging.WARNING):
        _load(tmp_path, "review,label\n" + rows)
    assert "holds numbers that are mostly different" in caplog.text, rows[:80]
    assert "--regression" in caplog.text


def test_two_spellings_of_one_number_are_warned_about(tmp_path, caplog):
    """0/1 labels written partly as 1.0: three classes where two are meant."""
    rows = "".join(f"text {i},{['0', '1', '1.0'][i % 3]}\n" for i in range(48))
    with caplog.at_level(logging.WARNING):
        task = _load(tmp_path, "review,label\n" + rows)
    assert task.num_labels == 3
    assert "the label column 'label' spells one number in several ways ('1' and '1.0')" in (
        caplog.text
    )


def test_a_training_sample_that_misses_classes_of_dev_is_warned_about(tmp_path, caplog):
    """--max-train 32 with 40 classes leaves at least 8 classes of dev without a training row."""
    rows = "".join(f"text {i} {j},c{i}\n" for i in range(40) for j in range(2))
    train = write(tmp_path, "train.csv", "review,label\n" + rows)
    with caplog.at_level(logging.WARNING):
        task = load_files(train, train, text_column="review", label_column="label", max_train=32)
    trained = {e.label for e in task.splits["train"]}
    assert len(trained) == 32
    assert (
        f"{train}: --max-train 32 keeps 32 training rows, which miss 8 of the 40 classes of the "
        "evaluation splits (e.g. 'c38', 'c39', 'c4'): the model can never predict them; raise "
        "--max-train (at least 40, the number of classes)"
    ) in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_files(train, train, text_column="review", label_column="label", max_train=40)
    assert "which miss" not in caplog.text  # one row of each class fits


# ---------------------------------------------------------------------------------------------
# Labels that train something meaningless, or split a class in two


def _rows(labels: list[str]) -> str:
    return "".join(f"text number {i},{label}\n" for i, label in enumerate(labels))


@pytest.mark.parametrize(
    ("labels", "shown"),
    [
        (["pos", "Pos", "neg"], "('Pos' and 'pos')"),
        (["positive", "POSITIVE", "negative"], "('POSITIVE' and 'positive')"),
        (["true", "True", "false"], "('True' and 'true')"),
        (["caf\u00e9", "cafe\u0301", "bar"], "('cafe\\u0301' and 'caf\\xe9')"),  # NFC, NFD
        (["very good", "very  good", "bad"], "('very  good' and 'very good')"),
    ],
)
def test_one_class_spelled_several_ways_is_warned_about(tmp_path, caplog, labels, shown):
    """Trailing spaces are trimmed (one class), but case, Unicode forms and inner spaces made
    two classes of one silently."""
    with caplog.at_level(logging.WARNING):
        task = _load(tmp_path, "review,label\n" + _rows(labels * 4))
    assert task.num_labels == 3  # the classes are the labels as written
    assert (
        f"the label column 'label' spells one class in several ways {shown}: each spelling is "
        "a class of its own; write each class one way"
    ) in caplog.text


def test_trailing_spaces_make_no_second_class(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        task = _load(tmp_path, "review,label\n" + _rows(["pos", "pos ", " neg", "neg"] * 3))
    assert task.label_names == ["neg", "pos"] and "several ways" not in caplog.text


@pytest.mark.parametrize(
    ("labels", "numbers", "words"),
    [
        (["1", "2", "pos", "neg"], "'1', '2'", "'neg', 'pos'"),
        (["1", "2", "3", "4", "5", "n/a"], "'1', '2', '3', ...", "'n/a'"),
    ],
)
def test_a_label_column_of_numbers_and_words_is_warned_about(
    tmp_path, caplog, labels, numbers, words
):
    with caplog.at_level(logging.WARNING):
        task = _load(tmp_path, "review,label\n" + _rows(labels * 3))
    assert task.num_labels == len(labels)
    assert (
        f"the label column 'label' mixes numbers ({numbers}) and words ({words}): "
        f"{len(labels)} classes; if a number and a word name one class, write it one way"
    ) in caplog.text


@pytest.mark.parametrize("labels", [["1.0", "2.0"], ["1", "2", "3"], ["pos", "neg"]])
def test_ordinary_labels_give_no_spelling_warning(tmp_path, caplog, labels):
    """Numbers written as floats are classes as written, as integers are: no warning."""
    with caplog.at_level(logging.WARNING):
        task = _load(tmp_path, "review,label\n" + _rows(labels * 4))
    assert task.label_names == sorted(labels)
    assert "several ways" not in caplog.text and "mixes numbers" not in caplog.text


def test_a_dev_label_in_another_case_names_the_training_spelling(tmp_path):
    with pytest.raises(UserError) as e:
        _load(tmp_path, "review,label\n" + _rows(["pos", "neg"] * 2), "review,label\nx,Pos\n")
    assert (
        "label 'Pos' does not occur in the training file "
        f"{tmp_path / 'train.csv'} (labels are compared as written: 'Pos' is not 'pos')"
    ) in one_line_error(e)


@pytest.mark.parametrize("label", ["\u200b", "\u200e\ufeff", "\u00ad"])
def test_an_invisible_label_is_an_empty_label(tmp_path, label):
    """A zero-width space as the label was a class of its own."""
    with pytest.raises(UserError) as e:
        _load(tmp_path, "review,label\n" + _rows(["pos", "neg", label] * 2))
    assert "line 4: empty label in column 'label' (only invisible characters: U+" in (
        one_line_error(e)
    )


def test_a_sample_of_one_class_is_refused(tmp_path):
    """--max-train 2 of 20 'big' rows and 2 of each other class keeps two 'big' rows: a
    classifier of one class, which a training file of one class is refused for."""
    rows = _rows(["big"] * 20 + ["a", "a", "b", "b"])
    train = write(tmp_path, "train.csv", "review,label\n" + rows)
    with pytest.raises(UserError) as e:
        load_files(train, train, text_column="review", label_column="label", max_train=2)
    assert one_line_error(e) == (
        f"{train}: --max-train 2 keeps 2 training rows, all of class 'big': a model trained "
        "on them predicts it for every text; raise --max-train (at least 3, the number of "
        "classes)"
    )


def test_constant_training_targets_are_refused(tmp_path):
    """Regression on one target value trains a model of that value (it was a warning about
    the correlations of the training split, which nothing reports)."""
    rows = "review,label\n" + _rows(["2.5"] * 8)
    with pytest.raises(UserError) as e:
        _load(tmp_path, rows, "review,label\na,1\nb,2\n", regression=True)
    assert one_line_error(e) == (
        f"{tmp_path / 'train.csv'}: every training target is 2.5: a model trained on it "
        "predicts one value for every text; use targets that vary"
    )
    rows = "review,label\n" + _rows(["2.5"] * 19 + ["4"])
    train = write(tmp_path, "nearly.csv", rows)
    with pytest.raises(UserError) as e:
        load_files(train, train, text_column="review", label_column="label", regression=True,
                   max_train=3)  # fmt: skip
    assert "--max-train 3 keeps 3 training rows, all with target 2.5" in one_line_error(e)


def test_a_glue_training_file_of_one_class_is_refused(tmp_path):
    """A --data-dir SST-2 whose train.tsv holds one label trained a one-class model silently
    (the check of user files did not reach GLUE's)."""
    from isobn.tasks import load_task

    folder = tmp_path / "SST-2"
    folder.mkdir()
    for name in ("train", "dev"):
        (folder / f"{name}.tsv").write_text("sentence\tlabel\n" + "good film\t1\n" * 6)
    with pytest.raises(UserError) as e:
        load_task("sst2", data_dir=str(tmp_path))
    assert one_line_error(e) == (
        "task sst2: every training label is 'positive'; classification needs at least two "
        "classes (or use regression for numeric targets)"
    )
