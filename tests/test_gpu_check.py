"""`make gpu-check-tiny`: the GPU check's five parts run on the CPU with a tiny random BERT and
each lands in the JSON report and the markdown summary."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_tiny_gpu_check_reports_every_part(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu_check

    # its own process, as `make gpu-check-tiny` runs it: the check trains with accelerate and
    # HF Trainer, whose process-wide state (AcceleratorState, logging) must not reach later tests
    script = str(BENCHMARKS / "gpu_check.py")
    run = subprocess.run([sys.executable, script, "--tiny", "--out", str(tmp_path)])
    code = run.returncode

    report = json.loads((tmp_path / "gpu_check.json").read_text())
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
    summary = (tmp_path / "summary.md").read_text()
    assert all(f"## {name}: ok" in summary for name in gpu_check.PARTS)
    sys.modules.pop("gpu_check", None)


def test_full_mode_without_a_gpu_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu_check

    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().out
    assert not (tmp_path / "gpu_check.json").exists()
