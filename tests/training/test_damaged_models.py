"""Bad model files and damaged checkpoints: one line naming the file and the fix, exit 2, no
traceback, before any training or inference; a pickle that is not plain weights stays
refused, and its code never runs."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from isobn.cli.main import main


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, command: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"isobn {command}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


class RunsCode:
    """A pickle that would run code when loaded (it only writes a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "the pickle ran"))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def _pickle_only(directory: Path) -> None:
    (directory / "model.safetensors").unlink()
    marker = directory.parent / f"{directory.name}-ran"
    with open(directory / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"weights": RunsCode(marker)}, handle)


MODEL_DAMAGE = {
    "empty weights": (
        lambda d: (d / "model.safetensors").write_bytes(b""),
        ["model.safetensors is damaged (Error while deserializing header", "save_pretrained"],
    ),
    "truncated weights": (
        lambda d: _truncate(d / "model.safetensors"),
        ["model.safetensors is damaged", "save the model there again"],
    ),
    "malicious pickle only": (
        _pickle_only,
        ["pytorch_model.bin was refused by the weights-only load", "model.safetensors"],
    ),
    "config.json not JSON": (
        lambda d: (d / "config.json").write_text('{"model_type": "bert", '),
        ["config.json is damaged (not JSON", "save the model there again"],
    ),
    "config of another size": (
        lambda d: (d / "config.json").write_text(
            json.dumps({**json.loads((d / "config.json").read_text()), "hidden_size": 64})
        ),
        [
            "do not fit its config.json (embeddings.position_embeddings.weight is (256, 32) in "
            "the weights, (256, 64) by config.json)",
            "save the model there again",
        ],
    ),
    "config.json a list": (
        lambda d: (d / "config.json").write_text("[1]"),
        ["config.json is damaged (holds list, not a JSON object)"],
    ),
}


@pytest.mark.parametrize("command", ["train", "analyze"])
@pytest.mark.parametrize("damage", list(MODEL_DAMAGE))
def test_bad_model_files_are_one_line(
    damage, command, tiny_bert, sentiment_files, tmp_path, capsys
):
    model = Path(shutil.copytree(tiny_bert, tmp_path / "model"))
    apply, fragments = MODEL_DAMAGE[damage]
    apply(model)
    argv = [command, "--model", str(model), "--out", str(tmp_path / "out")]
    argv += ["--train", sentiment_files["train"], "--dev", sentiment_files["dev"]]
    code, err = run_cli(argv, capsys)
    assert_one_line(code, err, command, str(model), *fragments)
    assert not (tmp_path / "model-ran").exists()  # the pickle's code never ran
    assert not (tmp_path / "out" / "config.json").exists()


def test_plain_pytorch_weights_still_load(tiny_bert, tmp_path):
    """The weights-only load is what refuses a pickle: a plain state dict is fine."""
    from isobn.training.pretrained import load_encoder

    model = Path(shutil.copytree(tiny_bert, tmp_path / "model"))
    weights = load_file(str(model / "model.safetensors"))
    (model / "model.safetensors").unlink()
    torch.save(weights, model / "pytorch_model.bin")
    encoder = load_encoder(str(model))
    name, tensor = next(iter(weights.items()))
    torch.testing.assert_close(encoder.state_dict()[name], tensor)


def _model_json(best: Path, **changes) -> None:
    config = json.loads((best / "isobn_model.json").read_text())
    (best / "isobn_model.json").write_text(json.dumps({**config, **changes}))


CHECKPOINT_DAMAGE = {
    "missing weights": (
        lambda b: (b / "model.safetensors").unlink(),
        ["best/model.safetensors is missing", "unchanged"],
    ),
    "truncated weights": (
        lambda b: _truncate(b / "model.safetensors"),
        ["best/model.safetensors is damaged"],
    ),
    "changed num_labels": (
        lambda b: _model_json(b, num_labels=5, label_names=list("abcde")),
        ["best/model.safetensors does not fit its isobn_model.json"],
    ),
    "num_labels not a number": (
        lambda b: _model_json(b, num_labels="two"),
        ["isobn_model.json is damaged (num_labels is 'two', not a positive integer)"],
    ),
    "label names of another count": (
        lambda b: _model_json(b, label_names=["a", "b", "c"]),
        ["isobn_model.json is damaged (3 label_names for num_labels 2)"],
    ),
    "unknown method": (
        lambda b: _model_json(b, method="nope"),
        ["isobn_model.json is damaged (unknown method 'nope'"],
    ),
    "isobn_model.json not JSON": (
        lambda b: (b / "isobn_model.json").write_text("{not json"),
        ["isobn_model.json is damaged (not JSON"],
    ),
    "isobn_model.json missing": (
        lambda b: (b / "isobn_model.json").unlink(),
        ["isobn_model.json"],  # predict: not a checkpoint; analyze: not an encoder either
    ),
}


@pytest.mark.parametrize("command", ["predict", "analyze"])
@pytest.mark.parametrize("damage", list(CHECKPOINT_DAMAGE))
def test_damaged_checkpoints_are_one_line(
    damage, command, trained_run, sentiment_files, tmp_path, capsys
):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    apply, fragments = CHECKPOINT_DAMAGE[damage]
    apply(run / "best")
    if command == "predict":
        texts = tmp_path / "texts.txt"
        texts.write_text("good movie\nbad plot\n")
        argv = ["predict", "--checkpoint", str(run / "best"), "--input", str(texts)]
    else:
        argv = ["analyze", "--model", str(run / "best"), "--out", str(tmp_path / "out")]
        argv += ["--train", sentiment_files["train"], "--dev", sentiment_files["dev"]]
    code, err = run_cli(argv, capsys)
    assert_one_line(code, err, command, *fragments)


def test_transformers_warnings_are_passed_on_only_when_loading_succeeds():
    """transformers' multi-line load report would stand before the one-line error: it is held
    while loading, passed on when loading succeeds, dropped when it fails."""
    import logging

    from transformers.utils import logging as hf_logging

    from isobn.training.pretrained import held_transformers_warnings

    library, seen = hf_logging.get_logger(), []
    handler = logging.Handler()
    handler.emit = seen.append
    library.addHandler(handler)
    level = library.level
    library.setLevel(logging.WARNING)  # another test module may have silenced transformers
    try:
        with held_transformers_warnings():
            hf_logging.get_logger("transformers.modeling_utils").warning("a report")
            assert seen == []  # held
        assert [record.getMessage() for record in seen] == ["a report"]
        with pytest.raises(OSError), held_transformers_warnings():
            hf_logging.get_logger("transformers.modeling_utils").warning("dropped")
            raise OSError("loading failed")
        with held_transformers_warnings(pass_on=False):
            hf_logging.get_logger("transformers.modeling_utils").warning("dropped too")
        assert [record.getMessage() for record in seen] == ["a report"]
        assert handler in library.handlers
    finally:
        library.removeHandler(handler)
        library.setLevel(level)
