"""A newcomer's first commands: a missing local model path is refused at once (never sent to
the hub), local inputs are checked before anything remote, a failed command leaves no empty
--out behind, and a finished run keeps best/ but not last/ (experiments: only the tables'
files) unless asked."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import QUICK_ARGS

from isobn.cli.main import main


@pytest.fixture
def no_hub(monkeypatch):
    """Fail the test if anything asks transformers for a tokenizer, config or model."""
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError(f"sent to transformers: {args[:1]}")

    for name in ("AutoTokenizer", "AutoConfig", "AutoModel"):
        monkeypatch.setattr(getattr(transformers, name), "from_pretrained", refuse)


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"isobn {command}: error: ") and "\n" not in err, err
    return err


def files_args(files: dict[str, str]) -> list[str]:
    return ["--train", files["train"], "--dev", files["dev"]]


def test_a_missing_local_model_path_is_refused_before_the_hub(
    tmp_path, monkeypatch, capsys, no_hub, sentiment_files
):
    monkeypatch.chdir(tmp_path)
    Path("runs").mkdir()  # runs/typo: its first part exists, so it is a path, not a hub name
    for model in ("runs/typo", "./typo", str(tmp_path / "typo")):
        argv = ["train", "--model", model, "--out", "out", *files_args(sentiment_files)]
        assert main(argv) == 2
        assert f"model directory {model} does not exist" in one_line_error(capsys, "train")
        assert not Path("out").exists()
    argv = ["analyze", "--compare", "none=runs/mr-none", "isobn=runs/mr-isobn", "--out", "an"]
    assert main(argv) == 2
    assert "model directory runs/mr-none does not exist" in one_line_error(capsys, "analyze")
    assert not Path("an").exists()


def test_looks_local():
    from isobn.training.pretrained import looks_local

    assert looks_local("./model") and looks_local("/abs/model") and looks_local("~/model")
    assert not looks_local("bert-base-cased")
    assert not looks_local("no-such-org-here/bert")  # org/name on the hub


def test_missing_glue_data_is_reported_before_any_hub_call(tmp_path, monkeypatch, capsys, no_hub):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--task", "rte", "--data-dir", "glue_data", "--model", "bert-base-cased"]
    assert main([*argv, "--out", "out"]) == 2
    assert "GLUE data directory not found: glue_data" in one_line_error(capsys, "train")
    assert not Path("out").exists()


def test_failed_commands_leave_no_out_folder(
    tmp_path, monkeypatch, capsys, tiny_bert, sentiment_files
):
    monkeypatch.chdir(tmp_path)
    missing = {"train": "missing.csv", "dev": sentiment_files["dev"]}
    common = ["--model", tiny_bert, *files_args(missing), *QUICK_ARGS]
    assert main(["train", *common, "--out", "a/b/train"]) == 2
    assert main(["experiment", *common, "--seeds", "1", "--out", "exp"]) == 2
    argv = ["analyze", "--model", tiny_bert, *files_args(missing), "--out", "an"]
    assert main(argv) == 2
    argv = ["predict", "--checkpoint", "no-run", "--input", "in.txt", "--output", "p/out.jsonl"]
    assert main(argv) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    capsys.readouterr()


def test_a_failed_demo_leaves_no_out_folder(tmp_path, monkeypatch, capsys):
    import isobn.analysis
    from isobn.errors import UserError

    def missing_data(cfg):
        raise UserError("the mr sentences are not installed: run make setup")

    monkeypatch.setattr(isobn.analysis, "load_examples", missing_data)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
    assert "not installed" in one_line_error(capsys, "demo")
    assert not (tmp_path / "demo").exists()


def tree(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def test_a_finished_run_keeps_best_but_not_last(tmp_path, capsys, tiny_bert, sentiment_files):
    argv = ["train", "--model", tiny_bert, *files_args(sentiment_files), *QUICK_ARGS]
    assert main([*argv, "--pooling", "cls", "--out", str(tmp_path / "run")]) == 0
    assert tree(tmp_path / "run") == {"best", "config.json", "log.jsonl", "metrics.json"}
    # --resume of the finished run returns its result without last/
    assert main([*argv, "--pooling", "cls", "--out", str(tmp_path / "run"), "--resume"]) == 0
    kept = tmp_path / "kept"
    assert main([*argv, "--pooling", "cls", "--out", str(kept), "--keep-last"]) == 0
    assert {"best", "last", "metrics.json"} <= tree(kept)
    capsys.readouterr()


def test_an_experiment_keeps_only_what_the_tables_need(
    tmp_path, capsys, tiny_bert, sentiment_files
):
    argv = ["experiment", "--model", tiny_bert, *files_args(sentiment_files), *QUICK_ARGS]
    argv += ["--pooling", "cls", "--methods", "none", "--seeds", "1", "--name", "sent"]
    assert main([*argv, "--out", str(tmp_path / "exp")]) == 0
    assert tree(tmp_path / "exp" / "sent" / "none" / "seed1") == {
        "config.json",
        "log.jsonl",
        "metrics.json",
    }
    assert main([*argv, "--out", str(tmp_path / "kept"), "--keep-checkpoints"]) == 0
    assert {"best", "last"} <= tree(tmp_path / "kept" / "sent" / "none" / "seed1")
    assert "results.md" in capsys.readouterr().out
