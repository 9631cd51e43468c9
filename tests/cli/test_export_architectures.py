"""`isobn export` on every architecture of tests/tiny_encoders.py: a run of `isobn train
--pooling pooler` exports wherever the encoder has a pooler, a `--pooling cls` run on DeBERTa
(whose head is a context pooler on token 0), and each loads without isobn with the run's logits,
labels and `isobn predict` output (and ONNX Runtime's logits); other runs are refused in one
line; a save_pretrained directory with IsoBN attached exports on every architecture.
MPNet's export (held-out weights the project does not have) maps the run's pooler onto
MPNetForSequenceClassification's dense + tanh head."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as T
from test_cli_errors import assert_one_line_error
from test_export import ERROR, export, load_all_in_a_clean_interpreter
from test_hf_architectures_cli import CLI_ARCHS, TRAIN_POOLING
from tiny_encoders import ARCHS, GUIDE_NAMES, sequence_classifier, tokenizer

import isobn
from isobn.cli.main import main
from isobn.training.model import load_checkpoint

POOLER_EXPORTED = [a for a in CLI_ARCHS if ARCHS[a].has_pooler]  # --pooling pooler exports
CLS_EXPORTED = ["deberta-v2", "deberta-v3"]  # --pooling cls exports (DeBERTa's context pooler)
EXPORTED = {**dict.fromkeys(POOLER_EXPORTED, "pooler"), **dict.fromkeys(CLS_EXPORTED, "cls")}
# every other run is refused (last, for causal decoders, runs on any encoder)
REFUSED = [(a, p) for a, p in TRAIN_POOLING.items() if p not in ("pooler", EXPORTED.get(a))]
REFUSED += [("bert", "last"), ("deberta-v2", "mean")]
PAIRS = [
    ("the word is good", "it is nice"),
    ("the word is bad", "it is bad"),
    ("a", "it is weak and dull and poor"),  # padded rows of other lengths
]
TEXTS = ["the movie was very good", "a dull and weak plot", "nice"]
LABELS = {0: "no", 1: "maybe", 2: "yes"}


def relative_error(got, expected) -> float:
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def run_logits(run: Path, pairs: list[tuple[str, str]] = PAIRS) -> np.ndarray:
    """The harness model's eval logits of `pairs` (as `isobn predict` computes them)."""
    model, tok = load_checkpoint(run / "best")
    batch = tok([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="pt")
    with torch.no_grad():
        return model.eval()(**batch).logits.numpy()


@pytest.fixture(scope="module")
def exports(arch_run, tmp_path_factory) -> dict[str, Path]:
    """arch -> `isobn export` of its exported run (EXPORTED's pooling, without --onnx)."""
    out = {}
    for arch, pooling in EXPORTED.items():
        out[arch] = tmp_path_factory.mktemp(f"export-{arch}") / "model"
        assert export(str(arch_run(arch, pooling)), "--out", str(out[arch]))[0] == 0
    return out


def attached_classifier(arch: str, directory: Path) -> np.ndarray:
    """Save the tiny `arch` classifier with IsoBN attached (statistics of a few batches, labels
    LABELS) and its tokenizer into `directory`; its eval logits of TEXTS."""
    model, tok = sequence_classifier(arch), tokenizer(arch)
    model.config.id2label, model.config.label2id = LABELS, {v: k for k, v in LABELS.items()}
    isobn.attach(model, beta=1.0).train()
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        for _ in range(3):
            model(**batch)
        logits = model.eval()(**batch).logits.numpy()
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return logits


@pytest.fixture(scope="module")
def attached(tmp_path_factory) -> dict[str, tuple[Path, Path, np.ndarray]]:
    """arch -> (save_pretrained directory with IsoBN, its `isobn export`, its eval logits)."""
    out = {}
    for arch in ARCHS:
        root = tmp_path_factory.mktemp(f"attached-{arch}")
        logits = attached_classifier(arch, root / "attached")
        assert export(str(root / "attached"), "--out", str(root / "out"))[0] == 0
        out[arch] = root / "attached", root / "out", logits
    return out


@pytest.fixture(scope="module")
def clean(exports, attached) -> dict[str, dict]:
    """Every export loaded in one interpreter where isobn cannot be imported: "run/arch" (PAIRS)
    and "attached/arch" (TEXTS) -> logits and pipeline scores."""
    runs = load_all_in_a_clean_interpreter(list(exports.values()), PAIRS)
    saved = load_all_in_a_clean_interpreter([out for _, out, _ in attached.values()], TEXTS)
    return {
        **{f"run/{arch}": result for arch, result in zip(exports, runs, strict=True)},
        **{f"attached/{arch}": result for arch, result in zip(attached, saved, strict=True)},
    }


def assert_pipeline_matches(result: dict, logits: np.ndarray, names: list[str]) -> None:
    """The pipeline's scores are the softmax of `logits`, under the run's label names."""
    probabilities = torch.tensor(logits).softmax(-1).numpy()
    for scores, row in zip(result["pipeline"], probabilities, strict=True):
        by_label = {item["label"]: item["score"] for item in scores}
        assert sorted(by_label) == sorted(names)
        np.testing.assert_allclose([by_label[n] for n in names], row, atol=1e-5)


@pytest.mark.parametrize("arch", EXPORTED)
def test_a_run_exports_with_the_runs_logits(arch, arch_run, exports, clean):
    config = json.loads((exports[arch] / "config.json").read_text())
    assert config["architectures"] == [ARCHS[arch].classifier]
    assert config["id2label"] == {"0": "0", "1": "1"}  # the labels as written in the data
    expected = run_logits(arch_run(arch, EXPORTED[arch]))
    result = clean[f"run/{arch}"]
    assert relative_error(result["logits"], expected) < 1e-5
    assert_pipeline_matches(result, expected, ["0", "1"])


def predictions(checkpoint: Path, inputs: Path, capsys) -> list[dict]:
    assert main(["predict", "--checkpoint", str(checkpoint), "--input", str(inputs)]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def assert_same_predictions(first: list[dict], second: list[dict]) -> None:
    assert [r["label"] for r in first] == [r["label"] for r in second]
    for a, b in zip(first, second, strict=True):
        assert a["probabilities"].keys() == b["probabilities"].keys()
        got, expected = list(b["probabilities"].values()), list(a["probabilities"].values())
        np.testing.assert_allclose(got, expected, atol=2e-6)


@pytest.mark.parametrize("arch", EXPORTED)
def test_predict_on_the_export_equals_predict_on_the_run(arch, arch_run, exports, tmp_path, capsys):
    inputs = tmp_path / "pairs.jsonl"  # the run's text columns, read from the export's config
    rows = [{"premise": a, "hypothesis": b} for a, b in PAIRS]
    inputs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run = predictions(arch_run(arch, EXPORTED[arch]), inputs, capsys)
    assert_same_predictions(run, predictions(exports[arch], inputs, capsys))


@pytest.mark.parametrize(("arch", "pooling"), REFUSED)
def test_a_run_no_transformers_head_takes_is_refused(arch, pooling, arch_run, tmp_path, capsys):
    run = arch_run(arch, pooling)
    capsys.readouterr()  # the training's output, where this test trained the run
    code, err = export(str(run), "--out", str(tmp_path / "out"), capsys=capsys)
    line = assert_one_line_error(
        code, err, f"--pooling {pooling} cannot be exported", "isobn predict", prefix=ERROR
    )
    if ARCHS[arch].has_pooler:
        assert line.endswith("train with --pooling pooler to export, or serve with `isobn predict`")
    elif arch in CLS_EXPORTED:
        assert line.endswith("train with --pooling cls to export, or serve with `isobn predict`")
    else:  # --pooling pooler is refused by `isobn train` on it: not the advice
        assert "has no pooler, so no run of `isobn train` on it exports" in line
        assert "--pooling pooler" not in line and "isobn.attach" in line
    assert list(tmp_path.iterdir()) == []  # neither --out nor a temporary directory


def test_every_pooling_but_pooler_is_refused_on_some_architecture():
    from isobn.training.config import POOLINGS

    assert {pooling for _, pooling in REFUSED} == set(POOLINGS) - {"pooler"}
    assert {ARCHS[arch].has_pooler for arch, _ in REFUSED} == {True, False}
    assert {arch for arch, _ in REFUSED} & set(CLS_EXPORTED)  # a DeBERTa run is refused too


@pytest.mark.parametrize("arch", list(ARCHS))
def test_a_saved_model_with_isobn_attached_exports_on_every_architecture(
    arch, attached, clean, tmp_path, capsys
):
    saved, out, expected = attached[arch]
    assert json.loads((out / "config.json").read_text())["architectures"] == [
        ARCHS[arch].classifier
    ]
    result = clean[f"attached/{arch}"]
    assert relative_error(result["logits"], expected) < 1e-5
    assert_pipeline_matches(result, expected, list(LABELS.values()))
    inputs = tmp_path / "texts.txt"
    inputs.write_text("\n".join(TEXTS) + "\n")
    assert_same_predictions(predictions(saved, inputs, capsys), predictions(out, inputs, capsys))


def test_mpnet_takes_the_runs_pooler_as_its_head_and_dropout_changes_no_eval_logit(
    arch_run, exports
):
    from safetensors.torch import load_file

    run = load_file(str(arch_run("mpnet", "pooler") / "best" / "model.safetensors"))
    plain = T.MPNetForSequenceClassification.from_pretrained(exports["mpnet"]).eval()
    assert all(p.dtype == torch.float32 for p in plain.parameters())
    head = plain.classifier  # dropout -> dense -> tanh -> dropout -> out_proj on token 0
    assert torch.equal(head.dense.weight, run["encoder.pooler.dense.weight"])
    assert torch.equal(head.dense.bias, run["encoder.pooler.dense.bias"])
    assert not torch.equal(head.out_proj.weight, run["classifier.weight"])  # IsoBN folded in
    expected = run_logits(arch_run("mpnet", "pooler"))
    tok = T.AutoTokenizer.from_pretrained(exports["mpnet"])
    batch = tok([a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True, return_tensors="pt")
    for p in (0.0, 0.5):  # dropout acts in training only: the same eval logits
        dropouts = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout")
        model = T.AutoModelForSequenceClassification.from_pretrained(
            exports["mpnet"], **dict.fromkeys(dropouts, p)
        ).eval()
        with torch.no_grad():
            assert relative_error(model(**batch).logits, expected) < 1e-5


@pytest.mark.slow  # torch.onnx.export of each model: ~15-30 s on 2 loaded cores
@pytest.mark.parametrize("arch", ["mpnet", "bert"])
def test_onnx_runtime_gives_the_runs_logits(arch, arch_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    run = arch_run(arch, "pooler")
    assert export(str(run), "--out", str(tmp_path / "out"), "--onnx")[0] == 0
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"))
    tok = T.AutoTokenizer.from_pretrained(tmp_path / "out")
    long = (" ".join(["good bad"] * 6), "it is")
    for pairs in (PAIRS, PAIRS[:1], [long] * 5):  # other batch sizes and lengths
        batch = tok([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="np")
        assert {i.name for i in session.get_inputs()} == set(batch)  # the tokenizer feeds it
        (logits,) = session.run(["logits"], {k: v.astype(np.int64) for k, v in batch.items()})
        np.testing.assert_allclose(logits, run_logits(run, pairs), rtol=1e-4, atol=1e-4)


GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "huggingface.md"


def test_the_guides_table_of_exports_is_the_tested_one():
    """Each row of the Deploying section's table: a pooler run exports where the tests export
    one, a cls run where they export one, every other run is refused, and every architecture
    exports by save_pretrained."""
    section = GUIDE.read_text().split("## Deploying\n")[1].split("\n## ")[0]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ")]
    covered = []
    for names, pooler_run, other_runs, saved in rows[1:]:  # the header aside
        archs = [a for name in names.strip().split(", ") for a in GUIDE_NAMES[name]]
        for arch in archs:
            exported = (
                "exports" if arch in POOLER_EXPORTED else "no pooler: `isobn train` refuses it"
            )
            assert pooler_run.strip() == exported, arch
            others = "`cls` exports; `mean`, `last` refused" if arch in CLS_EXPORTED else "refused"
            assert other_runs.strip() == others, arch
        assert saved.strip() == "exports"
        covered += archs
    assert sorted(covered) == sorted(ARCHS)
