"""The property behind every error message: no input makes an `isobn` command print a traceback.

For each command, hypothesis draws arguments and files from a grammar of bad values
(missing, empty, a directory, truncated, wrong type, wrong encoding, huge, contradictory,
damaged run directories, model files and checkpoints, Ray options and clusters that are not
there, a disk that fills up) mixed with good ones, runs the command in-process on a tiny
model, and asserts exit 0, or exit 2 with one `isobn CMD: error: ...` line, and that a
`--out` that existed before is unchanged by a failing command (a full disk may only have
continued unfinished work, and leaves no temporary file).

Examples are derandomized (the same cases every run, no example database): EXAMPLES gives
the number per command, 321 in all (report's grammar has 11 cases, all tried), in about 65 s
on two CPU cores (before the full disk and Ray draws were added). Each dimension draws its
good value in about half the draws (`mostly`), so that most cases hold one or two bad inputs
and reach their own check; about one case in ten
is valid and runs for real, so the grammar keeps runs small (24 training rows, 1 epoch) and
never draws a huge --epochs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import sys
from pathlib import Path

import pytest
from conftest import sentiment_rows, write_csv, write_jsonl
from full_disk import fills_after, leftovers
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from isobn.cli.main import main

pytestmark = pytest.mark.slow

EXAMPLES = {"train": 100, "predict": 80, "experiment": 50, "study": 30, "report": 11, "analyze": 50}
HUGE = "99999999999999999999"
BAD_NUMBERS = ["0", "-1", "nan", "inf", "1e309", "abc", "", HUGE, "0.5", "１"]
CHEAP_WHEN_HUGE = {"--batch-size", "--max-length", "--seed", "--patience", "--max-train"}
FILE_KINDS = [
    "valid",
    "missing",
    "empty",
    "directory",
    "header_only",
    "latin1",
    "binary",
    "open_quote",
    "wrong_columns",
    "one_class",
    "null_text",
    "object_text",
    "list_row",
    "huge_line",
    "unknown_label",
    "wrong_suffix",
    "bom",
    "utf16",
    "json_in_csv",
    "float_labels",
    "numeric_text",
    "many_columns",
    "invisible_text",
    "invisible_marks",
    "dropped_by_tokenizer",
    "continuous_labels",
]
MODEL_KINDS = [
    "valid",
    "missing",
    "empty_dir",
    "empty_weights",
    "truncated_weights",
    "pickle_only",
    "no_tokenizer",
    "bad_config_json",
    "config_of_another_size",
    "causal_decoder",
    "encoder_decoder",
]
CHECKPOINT_KINDS = [
    "run",
    "best",
    "missing_weights",
    "truncated_weights",
    "tampered_labels",
    "labels_of_wrong_type",
    "unknown_method",
    "bad_model_json",
    "no_model_json",
    "no_best",
    "empty_dir",
    "missing",
]
RUN_KINDS = [
    "fresh",
    "finished",
    "truncated_last_model",
    "truncated_last_state",
    "missing_last_optimizer",
    "bad_config",
    "missing_config",
    "list_config",
    "interrupted",
    "intact_old_copy",
    "cut_log_line",
    "tampered_last_state",
]


# --------------------------------------------------------------------------------------------
# The grammar: each function makes one kind of input in `where` and returns its path.


def make_data_file(kind: str, where: Path, name: str = "data") -> str:
    path = where / f"{name}.csv"
    rows = sentiment_rows(24, len(name))
    if kind == "valid":
        return write_csv(path, rows)
    if kind == "missing":
        return str(where / f"{name}-missing.csv")
    if kind == "directory":
        (where / f"{name}-dir.csv").mkdir()
        return str(where / f"{name}-dir.csv")
    if kind == "wrong_suffix":
        return write_csv(where / f"{name}.txt", rows)
    if kind in ("null_text", "object_text", "list_row"):
        path = where / f"{name}.jsonl"
        bad = {
            "null_text": {"text": None, "label": "pos"},
            "object_text": {"text": {"x": 1}, "label": "pos"},
            "list_row": ["a", "pos"],
        }[kind]
        write_jsonl(path, rows)
        path.write_text(path.read_text() + json.dumps(bad) + "\n")
        return str(path)
    if kind == "utf16":
        path.write_text("text,label\ngood,pos\nbad,neg\n", encoding="utf-16")
        return str(path)
    text = {
        "json_in_csv": json.dumps(rows),
        "float_labels": "text,label\ngood,0.5\nbad,1.5\n",
        "numeric_text": "text,label\n1,pos\n2,neg\n3,pos\n4,neg\n",
        "many_columns": ",".join(f"c{i}" for i in range(5000))
        + ",text,label\n"
        + ",".join("x" * 5000)
        + ",good,pos\n"
        + ",".join("y" * 5000)
        + ",bad,neg\n",
        "empty": "",
        "header_only": "text,label\n",
        "open_quote": 'text,label\n"unclosed,pos\nfine,neg\n',
        "wrong_columns": "sentence,y\nhello,pos\nbye,neg\n",
        "one_class": "text,label\n" + "good movie,pos\n" * 6,
        "huge_line": "text,label\n" + "good " * 40_000 + ",pos\nbad,neg\nfine,pos\nawful,neg\n",
        "unknown_label": "text,label\ngood,pos\nbad,neg\nodd,maybe\n",
        "invisible_text": "text,label\ngood,pos\nbad,neg\n\u200b\u200f\ufeff,pos\n",
        "invisible_marks": "text,label\ngood,pos\nbad,neg\n\ufe0f\u0301\u3164\u2800,pos\n",
        "dropped_by_tokenizer": "text,label\ngood,pos\nbad,neg\n\ufffd\ue000,pos\n",
        "continuous_labels": "text,label\n"
        + "".join(f"{r['text']},{i / 7:.3f}\n" for i, r in enumerate(rows)),
    }.get(kind)
    if text is not None:
        path.write_text(text)
    elif kind == "latin1":
        path.write_bytes("text,label\ncaf\xe9 good,pos\nbad,neg\n".encode("latin-1"))
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "bom":
        path.write_text("\ufefftext,label\ngood,pos\nbad,neg\nfine,pos\nawful,neg\n")
    return str(path)


def make_model(kind: str, where: Path, tiny_bert: str) -> str:
    target = where / f"model-{kind}"
    if kind == "valid":
        return tiny_bert
    if kind == "missing":
        return str(target)
    target.mkdir()
    if kind == "empty_dir":
        return str(target)
    for file in Path(tiny_bert).iterdir():
        shutil.copy(file, target / file.name)
    weights = target / "model.safetensors"
    if kind == "empty_weights":
        weights.write_bytes(b"")
    elif kind == "truncated_weights":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif kind == "pickle_only":
        weights.rename(target / "pytorch_model.bin")
    elif kind == "no_tokenizer":
        for file in target.iterdir():
            if "token" in file.name or file.name == "vocab.txt":
                file.unlink()
    elif kind == "bad_config_json":
        (target / "config.json").write_text('{"model_type": "bert", ')
    elif kind == "config_of_another_size":
        config = json.loads((target / "config.json").read_text())
        (target / "config.json").write_text(json.dumps({**config, "hidden_size": 64}))
    elif kind == "causal_decoder":  # a GPT-2 config: [CLS] pooling is refused before the weights
        config = {"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 2}
        (target / "config.json").write_text(json.dumps(config))
    elif kind == "encoder_decoder":  # a T5 config: refused before the weights, any pooling
        config = {"model_type": "t5", "d_model": 32, "num_layers": 2, "num_heads": 2}
        (target / "config.json").write_text(json.dumps(config))
    return str(target)


def make_checkpoint(kind: str, where: Path, trained_run: Path) -> str:
    if kind == "missing":
        return str(where / "no-such-run")
    target = where / f"ckpt-{kind}"
    if kind == "empty_dir":
        target.mkdir()
        return str(target)
    shutil.copytree(trained_run, target)
    best = target / "best"
    if kind == "best":
        return str(best)
    if kind == "missing_weights":
        (best / "model.safetensors").unlink()
    elif kind == "truncated_weights":
        weights = best / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:5000])
    elif kind == "tampered_labels":
        config = json.loads((best / "isobn_model.json").read_text())
        config["num_labels"] = 5
        config["label_names"] = ["a", "b", "c", "d", "e"]
        (best / "isobn_model.json").write_text(json.dumps(config))
    elif kind in ("labels_of_wrong_type", "unknown_method"):
        config = json.loads((best / "isobn_model.json").read_text())
        change = {"num_labels": "two"} if kind == "labels_of_wrong_type" else {"method": "x"}
        (best / "isobn_model.json").write_text(json.dumps({**config, **change}))
    elif kind == "bad_model_json":
        (best / "isobn_model.json").write_text("{not json")
    elif kind == "no_model_json":
        (best / "isobn_model.json").unlink()
    elif kind == "no_best":
        shutil.rmtree(best)
    return str(target)


def make_run_directory(kind: str, where: Path, trained_run: Path) -> Path:
    target = where / f"run-{kind}"
    if kind == "fresh":
        return target
    shutil.copytree(trained_run, target)
    if kind == "finished":
        return target
    (target / "metrics.json").unlink()  # last/ of the final evaluation: an interrupted run
    last = target / "last"
    if kind == "truncated_last_model":
        (last / "model.safetensors").write_bytes((last / "model.safetensors").read_bytes()[:999])
    elif kind == "truncated_last_state":
        (last / "trainer_state.json").write_text('{"epoch": ')
    elif kind == "missing_last_optimizer":
        (last / "optimizer.safetensors").unlink()
    elif kind == "bad_config":
        (target / "config.json").write_text("{oops")
    elif kind == "missing_config":
        (target / "config.json").unlink()
    elif kind == "list_config":
        (target / "config.json").write_text("[]")
    elif kind == "intact_old_copy":  # a damaged last/ beside the intact copy of a swap
        shutil.copytree(last, target / "last.old")
        (last / "rng.safetensors").write_bytes(b"")
    elif kind == "cut_log_line":
        with open(target / "log.jsonl", "a") as handle:
            handle.write('{"step": 99, "lo')
    elif kind == "tampered_last_state":
        (last / "trainer_state.json").write_text(json.dumps({"epoch": "one"}))
    return target


# --------------------------------------------------------------------------------------------
# Running a command and checking the property


def snapshot(directory: Path) -> dict[str, str]:
    if not directory.is_dir():
        return {}
    return {
        str(p.relative_to(directory)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def check_command(
    argv: list[str], out: Path | None = None, disk: tuple[Path, int] | None = None
) -> int:
    """Run `isobn ARGV`; assert exit 0, or exit 2 with one error line and `out` unchanged.
    `disk`: (folder, bytes) the disk below the folder holds (tests/full_disk.py): a full disk
    is then one more way to fail, which leaves no temporary file, and changes `out` only to
    continue work that was not finished (an interrupted run resumed up to the full disk)."""
    before = snapshot(out) if out is not None else None
    finished = out is not None and (out / "metrics.json").is_file()
    stderr, stdout = io.StringIO(), io.StringIO()
    filling = fills_after(*disk) if disk is not None else contextlib.nullcontext()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout), filling:
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    text = stderr.getvalue()
    assert "Traceback" not in text, (argv, text)
    assert code in (0, 2), (argv, code, text[-2000:])
    if disk is not None:
        assert leftovers(disk[0]) == [], (argv, disk, "temporary files left")
    if code == 2:
        lines = [line for line in text.replace("\r", "\n").splitlines() if "error:" in line]
        assert len(lines) == 1, (argv, text[-2000:])
        assert lines[0].startswith(f"isobn {argv[0]}: error: ") or lines[0].startswith(
            "isobn: error: "
        ), (argv, lines)
        full = ": error: no space left on " in lines[0]
        assert not full or disk is not None, (argv, lines, "a full disk that is not full")
        if before is not None and (finished or not full):
            assert snapshot(out) == before, (argv, "the failing command changed --out")
    return code


def disks():
    """No full disk in about half the draws, else one that fills after 0 to 30,000 bytes
    (a checkpoint of the tiny model is about 130 KB: every draw fills before the end)."""
    return mostly([None, 0, 300, 3000, 30000])


def numbers(options: list[str]):
    """Zero to two numeric options, each with a good (about half the draws) or a bad value
    (a huge one only where it is cheap: a huge --epochs is a valid, endless run)."""
    pair = st.tuples(st.sampled_from(options), mostly(["1", *BAD_NUMBERS, "2"]))
    pair = pair.filter(lambda p: p[1] != HUGE or p[0] in CHEAP_WHEN_HUGE)
    return st.lists(pair, max_size=2, unique_by=lambda p: p[0])


def mostly(kinds: list):
    """kinds[0] (the good value) in about half the draws, else any of `kinds`: most cases
    then have one or two bad inputs, so that each reaches its own check."""
    return st.one_of(st.just(kinds[0]), st.sampled_from(kinds))


def flatten(pairs) -> list[str]:
    return [token for option, value in pairs for token in (option, value)]


SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
QUICK = ["--epochs", "1", "--max-train", "24", "--max-length", "32", "--batch-size", "16"]


def trained_run_argv(tiny_bert: str, files: dict[str, str], out: Path) -> list[str]:
    """The arguments of conftest's trained_run (quick_config, 1 epoch, evaluations every 3
    steps): what --resume into a copy of it must repeat."""
    return [
        "train",
        "--model",
        tiny_bert,
        "--train",
        files["train"],
        "--dev",
        files["dev"],
        "--test",
        files["test"],
        "--out",
        str(out),
        "--pooling",
        "cls",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--lr",
        "1e-3",
        "--max-length",
        "32",
        "--log-every-steps",
        "1",
        "--seed",
        "3",
        "--eval-every-steps",
        "3",
    ]


def fresh(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("case")


# --------------------------------------------------------------------------------------------
# One property test per command


@settings(max_examples=EXAMPLES["train"], **SETTINGS)
@given(
    train=mostly(FILE_KINDS),
    dev=mostly(["valid", "missing", "empty", "unknown_label", "latin1", "null_text", "utf16"]),
    model=mostly(MODEL_KINDS),
    run=st.sampled_from(RUN_KINDS),
    same_settings=st.booleans(),
    resume=st.booleans(),
    extra=numbers(
        [
            "--epochs",
            "--batch-size",
            "--lr",
            "--max-length",
            "--seed",
            "--dropout",
            "--warmup-ratio",
            "--patience",
            "--max-train",
        ]
    ),
    contradiction=mostly(
        [
            [],
            ["--task", "trec"],
            ["--data-dir", "nowhere"],
            ["--method", "isobn:beta=-1"],
            ["--method", "nope"],
            ["--name", "a/b"],
            ["--regression"],
            ["--task"],
            ["--tasks", "mr"],
            ["--method", "none", "--norm", "isobn"],  # a dropped spelling
        ]
    ),
    disk=disks(),
)
@example(  # issue 27: a GPT-2 pooled at its first token; invisible texts; continuous labels
    train="invisible_text", dev="valid", model="causal_decoder", run="fresh",
    same_settings=False, resume=False, extra=[], contradiction=[], disk=None,
)  # fmt: skip
@example(
    train="continuous_labels", dev="valid", model="valid", run="fresh",
    same_settings=False, resume=False, extra=[("--max-train", "2")], contradiction=[],
    disk=None,
)  # fmt: skip
def test_train_never_prints_a_traceback(
    tmp_path_factory,
    tiny_bert,
    sentiment_files,
    trained_run,
    train,
    dev,
    model,
    run,
    same_settings,
    resume,
    extra,
    contradiction,
    disk,
):
    """Into a run directory (fresh, finished, interrupted, damaged), either with the settings
    it was trained with (so that --resume reaches the damage) or with drawn files, model and
    options; on a disk that fills up (`disk` bytes below the case's folder) or not."""
    where = fresh(tmp_path_factory)
    out = make_run_directory(run, where, trained_run)
    if same_settings and run != "fresh":
        argv = trained_run_argv(tiny_bert, sentiment_files, out)
    else:
        argv = [
            "train",
            "--model",
            make_model(model, where, tiny_bert),
            "--train",
            make_data_file(train, where, "train"),
            "--dev",
            make_data_file(dev, where, "dev"),
            "--out",
            str(out),
            "--pooling",
            "cls",
            *QUICK,
        ]
        argv += flatten(extra) + contradiction
    argv += ["--resume"] if resume else []
    filling = (where, disk) if disk is not None else None
    check_command(argv, out if run != "fresh" else None, filling)


@settings(max_examples=EXAMPLES["predict"], **SETTINGS)
@given(
    checkpoint=mostly(CHECKPOINT_KINDS),
    source=mostly(["text", *FILE_KINDS, "text_blank_lines", "empty_text"]),
    output=st.sampled_from(["stdout", "file", "missing_folder", "directory", "csv"]),
    extra=numbers(["--batch-size", "--max-length"]),
    disk=disks(),
)
def test_predict_never_prints_a_traceback(
    tmp_path_factory, trained_run, checkpoint, source, output, extra, disk
):
    where = fresh(tmp_path_factory)
    if source.startswith("text") or source == "empty_text":
        path = where / "input.txt"
        path.write_text(
            {
                "text": "good movie\nbad plot\n",
                "text_blank_lines": "good\n\n\nbad\n",
                "empty_text": "",
            }[source]
        )
        source_path = str(path)
    else:
        source_path = make_data_file(source, where, "input")
    argv = [
        "predict",
        "--checkpoint",
        make_checkpoint(checkpoint, where, trained_run),
        "--input",
        source_path,
    ]
    if output != "stdout":
        target = {
            "file": where / "p.jsonl",
            "missing_folder": where / "no" / "p.jsonl",
            "directory": where,
            "csv": where / "p.csv",
        }[output]
        argv += ["--output", str(target)]
    check_command(argv + flatten(extra), disk=(where, disk) if disk is not None else None)


@settings(max_examples=EXAMPLES["experiment"], **SETTINGS)
@given(
    data=st.sampled_from(
        [
            "files",
            "files_named",
            "files_badly_named",
            "tasks",
            "default_task",
            "tasks_and_files",  # the issue's `--tasks mr,trec --train F --dev G`
            "task_singular",
            "test_without_train",
            "name_without_train",
        ]
    ),
    tasks=mostly(["sst2", "sst2,rte", "SST-2,sst2", "", "nope", "sst2,sst2"]),
    methods=mostly(
        [
            "none",
            None,
            "none,nope",
            "",
            "isobn:beta=x",
            "istar:zeta=2",
            "isobn:eps=1e16",
            "isobn+istar+correg,isobn+correg+istar",
        ]
    ),
    seeds=mostly(["1", "1,2", "1,1", "a", "-1", "", HUGE, "1,01,+1"]),
    shard=mostly([None, "1/1", "2/2", "3/2", "x", "0/0"]),
    prior=st.booleans(),
    extra=numbers(["--epochs", "--batch-size", "--lr"]),
)
@example(  # the issue's `--tasks mr,trec --train F --dev G`, into a finished experiment
    data="tasks_and_files",
    tasks="sst2",
    methods="none",
    seeds="1",
    shard=None,
    prior=True,
    extra=[],
)
def test_experiment_never_prints_a_traceback(
    tmp_path_factory,
    tiny_bert,
    sentiment_files,
    glue_dir,
    data,
    tasks,
    methods,
    seeds,
    shard,
    prior,
    extra,
):
    """`prior`: the directory already holds a finished file experiment (of other settings
    for most draws), which a failing command must leave as it was."""
    where = fresh(tmp_path_factory)
    out = where / "exp"
    base = ["experiment", "--model", tiny_bert, "--out", str(out), "--pooling", "cls", *QUICK]
    files = ["--train", sentiment_files["train"], "--dev", sentiment_files["dev"]]
    if prior:
        before = [*base, *files, "--methods", "none", "--seeds", "1", "--name", "sentiment"]
        assert main(before) == 0
    argv = (
        base
        + {
            "files": files,
            "files_named": [*files, "--name", "sentiment"],
            "files_badly_named": [*files, "--name", "../up"],
            "tasks": ["--tasks", tasks, "--data-dir", glue_dir],
            "default_task": ["--max-length", "0"],  # mr on its real data: refused before training
            "tasks_and_files": ["--tasks", "mr,trec", *files],
            "task_singular": ["--task", "trec"],
            "test_without_train": ["--tasks", "sst2", "--data-dir", glue_dir, "--test", files[1]],
            "name_without_train": ["--tasks", "sst2", "--data-dir", glue_dir, "--name", "x"],
        }[data]
    )
    for option, value in (("--methods", methods), ("--seeds", seeds), ("--shard", shard)):
        if value is not None:
            argv += [option, value]
    check_command(argv + flatten(extra), out if prior else None)


STUDY = """[study]
name = "fuzz"
model = "{model}"
[train]
epochs = 1
isotropy_examples = 16
[tasks.sent]
train_file = "{train}"
dev_file = "{dev}"
[[block]]
name = "main"
tasks = ["sent"]
sizes = [24]
methods = ["none"]
seeds = [1]
"""


# each refused before Ray starts: a bad value, or a cluster with nothing listening
RAY_OPTIONS = [
    ["--backend", "ray", "--address", "127.0.0.1:1", "--connect-timeout", "5"],
    ["--backend", "ray", "--address", "foo"],
    ["--backend", "ray", "--address", "ray://h:99999"],
    ["--backend", "ray", "--gpus-per-cell", "nan"],
    ["--backend", "ray", "--gpus-per-cell", "-inf"],
    ["--backend", "ray", "--cpus-per-cell", "0"],
    ["--backend", "ray", "--max-retries", HUGE],
    ["--backend", "ray", "--address", "127.0.0.1:1", "--connect-timeout", "nan"],
    ["--backend", "ray", "--connect-timeout", "5"],
    ["--address", "127.0.0.1:1"],
    ["--backend", "ray", "--address", "::1:6379"],
    ["--backend", "ray", "--address", "a..b:1", "--connect-timeout", "5"],
    ["--backend", "ray", "--address", "auto", "--connect-timeout", "1e-9"],
    ["--backend", "ray", "--address", "http://127.0.0.1:8265"],  # the dashboard's URL
    ["--backend", "ray", "--address", "ray://127.0.0.1:1", "--connect-timeout", "2"],
    ["--backend", "ray", "--address", "localhost:0"],
    ["--backend", "ray", "--address", "local"],
    ["--backend", "ray", "--gpus-per-cell", "1e-5"],  # below Ray's precision
    ["--threads", HUGE],
]


@settings(max_examples=EXAMPLES["study"], **SETTINGS)
@given(
    damage=mostly(
        [
            "none",
            "truncate",
            "bad_value",
            "bad_method",
            "missing",
            "empty",
            "directory",
            "latin1",
            "unknown_key",
            "escaping_task",
            "two_spellings",
        ]
    ),
    cell=mostly(["none", "not_json", "a_list", "no_keys"]),
    extra=st.lists(
        st.sampled_from(
            [
                ["--jobs", "0"],
                ["--shard", "2/1"],
                ["--plan"],
                ["--report-only"],
                ["--threads", "-1"],
                ["--max-cells", "x"],
                *RAY_OPTIONS,
            ]
        ),
        max_size=1,
    ),
    disk=disks(),
)
@example(damage="none", cell="not_json", extra=[["--report-only"]], disk=None)
@example(damage="none", cell="none", extra=[["--report-only"]], disk=0)
@example(damage="none", cell="none", extra=[RAY_OPTIONS[0]], disk=None)
@example(damage="none", cell="none", extra=[RAY_OPTIONS[14]], disk=None)  # ray://, no grpc
def test_study_never_prints_a_traceback(
    tmp_path_factory, monkeypatch, tiny_bert, sentiment_files, damage, cell, extra, disk
):
    """`cell`: --out already holds the record of the study's one cell, damaged. The Ray
    options are all refused before Ray starts or is reached (no local Ray is started)."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # without --address, it names a cluster
    where = fresh(tmp_path_factory)
    if cell != "none":
        record = where / "out" / "cells" / "sent" / "n24" / "none" / "seed1.json"
        record.parent.mkdir(parents=True)
        record.write_text({"not_json": "{", "a_list": "[]", "no_keys": "{}"}[cell])
    path = where / "study.toml"
    text = STUDY.format(model=tiny_bert, train=sentiment_files["train"], dev=sentiment_files["dev"])
    text = {
        "truncate": text[: len(text) // 2],
        "bad_value": text.replace("epochs = 1", "epochs = -3"),
        "bad_method": text.replace('["none"]', '["isobn:beta=nan"]'),
        "empty": "",
        "unknown_key": text.replace("[train]", "[train]\nfoo = 1"),
        "escaping_task": text.replace("[tasks.sent]", '[tasks."../../escaped"]').replace(
            '["sent"]', '["../../escaped"]'
        ),
        "two_spellings": text.replace('tasks = ["sent"]', 'tasks = ["sent", "SENT"]'),
    }.get(damage, text)
    if damage == "directory":
        path.mkdir()
    elif damage == "latin1":
        path.write_bytes(text.replace("fuzz", "f\xfcz").encode("latin-1"))
    elif damage != "missing":
        path.write_text(text)
    argv = ["study", str(path), "--out", str(where / "out")]
    filling = (where / "out", disk) if disk is not None else None
    check_command(argv + [token for option in extra for token in option], disk=filling)
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized(), (argv, "Ray was started")


@settings(max_examples=EXAMPLES["report"], **SETTINGS)
@given(
    damage=st.sampled_from(
        [
            "none",
            "missing",
            "empty",
            "file",
            "bad_metrics",
            "list_metrics",
            "no_main_metric",
            "bad_log",
            "list_config",
            "binary_config",
            "two_runs_of_one_cell",
        ]
    )
)
def test_report_never_prints_a_traceback(tmp_path_factory, trained_run, damage):
    where = fresh(tmp_path_factory)
    directory = where / "exp"
    if damage == "file":
        directory.write_text("x")
    elif damage != "missing":
        directory.mkdir()
    if damage not in ("missing", "empty", "file"):
        data = json.loads((trained_run / "metrics.json").read_text())["task"]
        run = directory / data / "isobn" / "seed3"
        shutil.copytree(trained_run, run)
        metrics = run / "metrics.json"
        if damage == "bad_metrics":
            metrics.write_text("{")
        elif damage == "list_metrics":
            metrics.write_text("[]")
        elif damage == "no_main_metric":
            metrics.write_text(json.dumps({"task": "mr", "seed": 1}))
        elif damage == "bad_log":
            (run / "log.jsonl").write_text("{\n")
        elif damage == "list_config":
            (run / "config.json").write_text("[]")
        elif damage == "binary_config":
            (run / "config.json").write_bytes(bytes(range(256)))
        elif damage == "two_runs_of_one_cell":
            shutil.copytree(run, directory / "copy" / "isobn" / "seed3")
    check_command(["report", str(directory)])


@settings(max_examples=EXAMPLES["analyze"], **SETTINGS)
@given(
    model=mostly(MODEL_KINDS + ["checkpoint:" + k for k in CHECKPOINT_KINDS]),
    data=mostly(["valid", "missing", "empty", "latin1", "one_class", "header_only", "utf16"]),
    extra=st.lists(
        st.sampled_from(
            [
                ["--pooling", "nope"],
                ["--layers", "x"],
                ["--max-examples", "1"],
                ["--split", "nope"],
                ["--max-length", "0"],
                ["--batch-size", "-1"],
            ]
        ),
        max_size=1,
    ),
    disk=disks(),
)
def test_analyze_never_prints_a_traceback(
    tmp_path_factory, tiny_bert, trained_run, sentiment_files, model, data, extra, disk
):
    where = fresh(tmp_path_factory)
    if model.startswith("checkpoint:"):
        model_path = make_checkpoint(model.split(":", 1)[1], where, trained_run)
    else:
        model_path = make_model(model, where, tiny_bert)
    argv = [
        "analyze",
        "--model",
        model_path,
        "--train",
        make_data_file(data, where, "train"),
        "--dev",
        sentiment_files["dev"],
        "--split",
        "dev",
        "--out",
        str(where / "a"),
    ]
    filling = (where / "a", disk) if disk is not None else None
    check_command(argv + [token for option in extra for token in option], disk=filling)
