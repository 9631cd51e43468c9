"""`isobn train --model DIR` and `isobn analyze --model DIR` on a tiny random encoder of every
architecture that isobn.attach supports, saved with its own tokenizer like a pre-trained one."""

from __future__ import annotations

import json

import pytest
from conftest import ARCH_QUICK as QUICK
from conftest import pair_args
from safetensors.torch import load_file
from tiny_encoders import ARCHS

from isobn.cli.main import main

CLI_ARCHS = [a for a in ARCHS if a != "modernbert-mean"]  # the same encoder as "modernbert"
NO_POOLER = [a for a in CLI_ARCHS if not ARCHS[a].has_pooler]
# The pooling each architecture trains with: every choice on several architectures, `pooler`
# only where the encoder has one.
TRAIN_POOLING = {
    "bert": "pooler",
    "albert": "mean",
    "deberta-v2": "cls",
    "deberta-v3": "mean",
    "modernbert": "cls",
    "distilbert": "cls",
    "roberta": "pooler",
    "xlm-roberta": "mean",
    "camembert": "cls",
    "mpnet": "pooler",
    "electra": "mean",
}


def test_every_architecture_trains_with_a_pooling():
    assert set(TRAIN_POOLING) == set(CLI_ARCHS)
    assert {TRAIN_POOLING[a] for a in CLI_ARCHS} == {"pooler", "cls", "mean"}
    assert all(TRAIN_POOLING[a] != "pooler" for a in NO_POOLER)


@pytest.mark.parametrize("arch", CLI_ARCHS)
def test_train_and_analyze(arch, encoder_dirs, arch_run, pair_files, tmp_path):
    model_dir = encoder_dirs(arch)
    pooling = TRAIN_POOLING[arch]
    out = arch_run(arch, pooling)  # `isobn train --model model_dir --pooling pooling` (conftest)
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["dev"]["accuracy"] <= 1
    weights = load_file(str(out / "best" / "model.safetensors"))
    assert weights["norm.num_batches_tracked"].item() == 2  # 32 pairs in batches of 16
    assert json.loads((out / "best" / "isobn_model.json").read_text())["pooling"] == pooling

    analysis = tmp_path / "analysis"
    args = ["analyze", "--model", model_dir, *pair_args(pair_files), "--pooling", "all"]
    assert main([*args, "--split", "dev", "--max-examples", "20", "--out", str(analysis)]) == 0
    (entry,) = json.loads((analysis / "isotropy.json").read_text())["models"]
    expected = {"cls", "mean", "pooler"} if ARCHS[arch].has_pooler else {"cls", "mean"}
    assert set(entry["reports"]) == expected
    assert all(report["n"] == 20 for report in entry["reports"].values())


SEGMENT_ARCHS = ["albert", "bert", "electra"]  # pre-trained with two segments


@pytest.mark.parametrize("arch", SEGMENT_ARCHS)
def test_a_runs_tokenizer_gives_pairs_two_segments(arch, arch_run):
    """transformers 5's ALBERT tokenizer drops token_type_ids (huggingface/transformers#48128):
    the run asks for them, and its saved tokenizer (read by predict and export) keeps them."""
    from transformers import AutoTokenizer

    best = arch_run(arch, TRAIN_POOLING[arch]) / "best"
    types = AutoTokenizer.from_pretrained(best)("a b", "c d")["token_type_ids"]
    assert types[0] == 0 and types[-1] == 1 and sorted(types) == types


def test_the_albert_tokenizer_alone_drops_the_segments():
    """Why the run asks: without it the pair would read as one segment."""
    from types import SimpleNamespace

    from isobn.training.pretrained import request_segment_ids

    tokenizer = ARCHS["albert"].tokenizer()
    assert "token_type_ids" not in tokenizer("a b", "c d")
    request_segment_ids(tokenizer, SimpleNamespace(type_vocab_size=2))
    assert tokenizer("a b", "c d")["token_type_ids"][-1] == 1
    roberta = ARCHS["roberta"].tokenizer()
    request_segment_ids(roberta, SimpleNamespace(type_vocab_size=1))  # one segment: unchanged
    assert "token_type_ids" not in roberta.model_input_names


@pytest.mark.parametrize("arch", list(ARCHS))
def test_the_architecture_tells_whether_there_is_a_pooler(arch):
    from transformers import MODEL_MAPPING

    from isobn.training.pooling import returns_pooler_output

    config = ARCHS[arch].config(ARCHS[arch].tokenizer())
    assert returns_pooler_output(MODEL_MAPPING[type(config)]) is ARCHS[arch].has_pooler


def test_a_forward_without_a_model_output_annotation_does_not_tell():
    from isobn.training.pooling import returns_pooler_output

    class Unannotated:
        def forward(self, input_ids): ...

    class Unresolvable:
        def forward(self, input_ids) -> NoSuchOutput:  # noqa: F821
            ...

    assert returns_pooler_output(Unannotated) is None
    assert returns_pooler_output(Unresolvable) is None


@pytest.mark.parametrize("arch", NO_POOLER)
def test_pooler_without_a_pooler_is_one_line(
    arch, encoder_dirs, pair_files, tmp_path, capsys, monkeypatch
):
    import isobn.training.build

    def never(*args, **kwargs):
        raise AssertionError("tokenised before the pooler was checked")

    model_dir = encoder_dirs(arch)
    out = tmp_path / "run"
    args = ["train", "--model", model_dir, *pair_args(pair_files), "--pooling", "pooler"]
    with monkeypatch.context() as patch:
        patch.setattr(isobn.training.build, "encode", never)  # refused before the data is tokenised
        assert main([*args, "--out", str(out), *QUICK]) == 2
    err = capsys.readouterr().err
    assert (
        "isobn train: error: the encoder has no pooler: use --pooling cls or --pooling mean" in err
    )
    assert "Traceback" not in err
    args = ["train", "--model", model_dir, *pair_args(pair_files), "--pooling", "cls"]
    assert main([*args, "--out", str(out), *QUICK]) == 0  # the same --out, now with cls

    args = ["analyze", "--model", model_dir, *pair_args(pair_files), "--pooling", "pooler"]
    assert main([*args, "--split", "dev", "--out", str(tmp_path / "an")]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "error" in line]
    assert line.startswith("isobn analyze: error: ")
    assert line.endswith("has no pooler: use --pooling cls or --pooling mean")
