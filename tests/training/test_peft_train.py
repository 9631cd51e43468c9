"""isobn train --peft lora:...: only the LoRA adapters (and the head) train, the checkpoint
rebuilds them, and a bad spec or a missing peft is one line."""

import builtins

import pytest
import torch
from conftest import quick_config
from safetensors.torch import load_file

from isobn.cli.main import main
from isobn.training.model import load_checkpoint
from isobn.training.train import train

pytest.importorskip("peft")

SPEC = "lora:r=4,alpha=8,dropout=0.1,target=query,value"


def test_lora_run_trains_adapters_and_head_only(tmp_path, tiny_bert, sentiment_files):
    out = tmp_path / "run"
    train(quick_config(out, tiny_bert, sentiment_files, epochs=1, peft=SPEC))
    model, _ = load_checkpoint(out / "best")
    assert model.config.peft == SPEC
    state = model.state_dict()
    lora_b = [k for k in state if "lora_B" in k]
    assert lora_b and any(state[k].abs().sum() > 0 for k in lora_b)  # B starts at 0: trained
    assert model.norm.num_batches_tracked.item() > 0
    # the encoder's own weights are frozen: equal to the pre-trained ones
    pretrained = load_file(f"{tiny_bert}/model.safetensors")
    query = next(k for k in pretrained if k.endswith("layer.0.attention.self.query.weight"))
    layer_key = query.removeprefix("bert.").replace("query.weight", "query.base_layer.weight")
    saved = state[f"encoder.{layer_key}"]
    assert torch.equal(saved, pretrained[query])


def run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def train_argv(tiny_bert, files, out, spec):
    return [
        "train", "--model", tiny_bert, "--train", files["train"], "--dev", files["dev"],
        "--out", str(out), "--epochs", "1", "--peft", spec,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("lora:r=0", "lora r must be an integer >= 1"),
        ("lora:rank=8", "unknown lora key 'rank'"),
        ("ia3", "only lora is supported"),
        ("lora:target=nosuch", "Target modules {'nosuch'} not found"),
    ],
)
def test_a_bad_spec_is_one_line(tmp_path, capsys, tiny_bert, sentiment_files, spec, fragment):
    out = tmp_path / "run"
    code, err = run(train_argv(tiny_bert, sentiment_files, out, spec), capsys)
    assert code == 2 and "Traceback" not in err, err
    # transformers' weight-loading progress bar may precede an error found on the model
    lines = [line for line in err.strip().splitlines() if not line.startswith("Loading weights")]
    assert len(lines) == 1 and fragment in lines[0], err


def test_missing_peft_is_one_line(tmp_path, capsys, monkeypatch, tiny_bert, sentiment_files):
    real_import = builtins.__import__

    def no_peft(name, *args, **kwargs):
        if name == "peft" or name.startswith("peft."):
            raise ImportError("No module named 'peft'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_peft)
    out = tmp_path / "run"
    code, err = run(train_argv(tiny_bert, sentiment_files, out, SPEC), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "pip install 'isobn[peft]'" in err
    assert not out.exists()
