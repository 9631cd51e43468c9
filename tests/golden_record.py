"""Record the golden runs of tests/training/test_golden.py (run once, with the code whose behaviour
the
test keeps; commit 9dc70fc recorded the files in tests/data/golden/).

    .venv/bin/python tests/golden_record.py

Writes, for the methods `none` and `isobn`, metrics.json, log.jsonl and best.safetensors (the
best checkpoint's tensors), and `interrupted/`: an isobn run directory in the format of that
commit, stopped after the resume point of step INTERRUPT_AT (paths replaced by {MODEL},
{DATA} and {OUT}), which test_golden resumes with today's code.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "data" / "golden"
INTERRUPT_AT = 10  # of 18 steps: in the second epoch, after best/ was written


def main() -> None:
    sys.path.insert(0, str(HERE))
    import golden_setup

    from isobn.training import checkpoint as ckpt
    from isobn.training.train import TrainConfig, train

    tmp = Path(tempfile.mkdtemp(prefix="isobn-golden-"))
    try:
        model, data = golden_setup.write_inputs(tmp)
        for norm in ("none", "isobn"):
            out = tmp / norm
            train(TrainConfig(**golden_setup.settings(model, data, out), method=norm))
            target = GOLDEN / norm
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(out / "metrics.json", target / "metrics.json")
            shutil.copy(out / "log.jsonl", target / "log.jsonl")
            shutil.copy(out / "best" / "model.safetensors", target / "best.safetensors")

        out = tmp / "interrupted"
        original = ckpt.write_directory_atomically

        def stop_after_step(target, write):
            original(target, write)
            state = Path(target) / "trainer_state.json"
            if state.is_file() and json.loads(state.read_text())["global_step"] >= INTERRUPT_AT:
                raise KeyboardInterrupt

        ckpt.write_directory_atomically = stop_after_step
        try:
            cfg = TrainConfig(**golden_setup.settings(model, data, out), method="isobn")
            cfg.save_every_steps = 1
            train(cfg)
        except KeyboardInterrupt:
            pass
        finally:
            ckpt.write_directory_atomically = original
        assert not (out / "metrics.json").exists()
        target = GOLDEN / "interrupted"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(out, target)
        for path in target.rglob("*"):
            if path.suffix in (".json", ".jsonl"):
                text = path.read_text()
                for old, new in ((str(out), "{OUT}"), (str(data), "{DATA}"), (model, "{MODEL}")):
                    text = text.replace(old, new)
                path.write_text(text)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
