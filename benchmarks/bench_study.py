"""Study throughput: cells per hour of `isobn study --jobs 2` against `--jobs 1`.

A tiny study file written to the scratch directory: mr at training size 200, methods none and
isobn, seeds 1 and 2 (4 cells), 2 epochs, batch 32, dev and test capped at 200 sentences,
isotropy of 200 dev rows; the model of the other benchmarks. Each sample runs the whole
command, `python -m isobn.cli.main study FILE --out DIR --jobs J`, into a fresh directory
(the study's own choice of threads: cores / jobs), the two arms alternating in interleaved
rounds. Two figures per arm: cells per hour over the session's wall time as the study records
it (sessions.jsonl: from the start of its cells to the end of the last, job processes'
start-up included) and over the whole command (interpreter start-up and the report after the
cells included).

    .venv/bin/python benchmarks/bench_study.py [--quick] [--repeats N]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import common
import timing

JOBS = (1, 2)
STUDY = """\
[study]
name = "bench"
model = "{model}"

[train]
max_length = 128
batch_size = 32
epochs = {epochs}
max_eval = 200
isotropy_examples = 200

[tasks.{task}]
{files}
[[block]]
name = "main"
tasks = ["{task}"]
sizes = [{size}]
methods = ["none", "isobn"]
seeds = [1, 2]
"""


def study_text(model: str, size: int, epochs: int, files: dict[str, str] | None = None) -> str:
    """The benchmark's study file: task mr, or with `files` ({split: CSV path}) the file task
    mr-sample made of them."""
    if files is None:
        return STUDY.format(model=model, size=size, epochs=epochs, task="mr", files="")
    lines = "".join(f'{split}_file = "{path}"\n' for split, path in files.items())
    return STUDY.format(model=model, size=size, epochs=epochs, task="mr-sample", files=lines)


def study_arm(settings: common.Settings, path, jobs: int, whole: list[float]):
    """One whole `isobn study` command into a fresh directory: its session's cells/hour
    (returned) and the whole command's (appended to `whole`)."""
    rounds = iter(range(10**6))

    def arm() -> float:
        out = settings.tmp / f"study-jobs{jobs}-{next(rounds)}"
        command = [sys.executable, "-m", "isobn.cli.main", "study", str(path)]
        command += ["--out", str(out), "--jobs", str(jobs)]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        sessions = [json.loads(line) for line in (out / "sessions.jsonl").read_text().splitlines()]
        end = sessions[-1]
        cells = end["cells_finished"]
        whole.append(3600 * cells / seconds)
        return 3600 * cells / end["wall_seconds"]

    return arm


def run(settings: common.Settings) -> dict:
    common.header("Study throughput: cells per hour, isobn study --jobs 2 vs --jobs 1")
    size, epochs = (64, 1) if settings.quick else (200, 2)
    path = settings.tmp / "bench-study.toml"
    path.write_text(study_text(settings.model_dir(), size, epochs))
    whole = {jobs: [] for jobs in JOBS}
    arms = {f"--jobs {jobs}": study_arm(settings, path, jobs, whole[jobs]) for jobs in JOBS}
    samples = timing.interleaved(arms, settings.repeats)
    rows, results = [], {"cells": 4, "size": size, "epochs": epochs, "arms": {}}
    for jobs in JOBS:
        name = f"--jobs {jobs}"
        rate, whole_rate = timing.median(samples[name]), timing.median(whole[jobs])
        results["arms"][name] = {
            "cells_per_hour": rate,
            "samples": samples[name],
            "whole_command_cells_per_hour": whole_rate,
            "whole_command_samples": whole[jobs],
        }
        rounds = " ".join(f"{s:.0f}" for s in samples[name])
        rows.append([name, f"{rate:.0f}", rounds, f"{whole_rate:.0f}"])
    common.table(rows, ["study", "cells/hour", "rounds", "whole command cells/hour"])
    ratio = timing.ratio(samples["--jobs 2"], samples["--jobs 1"])
    whole_ratio = timing.ratio(whole[2], whole[1])
    results["ratio"], results["whole_command_ratio"] = ratio, whole_ratio
    print(
        f"  4 cells (mr, size {size}, none/isobn x seeds 1-2, {epochs} epochs, batch 32, "
        f"dev/test 200), {settings.model}; median of {settings.repeats} interleaved rounds"
    )
    print(
        f"  --jobs 2 / --jobs 1: {timing.format_ratio(ratio)} (session), "
        f"{timing.format_ratio(whole_ratio)} (whole command)"
    )
    return results


if __name__ == "__main__":
    common.run_standalone(run, __doc__)
