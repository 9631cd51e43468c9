"""Study on Ray: cells per hour of `isobn study --backend ray` against `--jobs 2`, and Ray's
per-cell overhead as a share of a cell. Needs a quiet machine (nothing else running).

The study of bench_study (mr, none/isobn x seeds 1-2: 4 cells). Both arms run the whole
command into a fresh directory with the process pinned to 2 cores (sched_setaffinity), so
`--jobs 2` runs 2 jobs of 1 thread and `--backend ray` starts a local Ray of 2 CPUs (its
default: the usable cores) running 2 cells of 1 CPU at once; the arms alternate in
interleaved rounds.

Figures per arm: cells/hour over the session (sessions.jsonl: the start of the first cell's
dispatch to the last record; Ray's start-up is outside it) and over the whole command (Ray's
start-up and the report included); the share outside cells, 1 - (sum of the cells' own wall
seconds / 2 slots) / session wall seconds: the part of the 2 slots' time spent outside the
cell function, which also holds the imbalance of the last cells (a slot with no cell left
waits for the other); and the per-cell overhead, the engine's own part of it: the seconds a
slot waited while a cell was there to run (the session's start, or the slot's previous cell's
end, to the cell's start: dispatch and worker start; Ray: the task's start, local: the job
process's start-up), plus the last result's way back to the end of the session, as a share of
the cells' own seconds. The cells' starts and ends come from their records (`finished_at` less
`wall_seconds`). Target for Ray: < 5%.

    .venv/bin/python benchmarks/bench_ray.py [--quick] [--repeats N]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import bench_study
import common
import timing

ARMS = {"--jobs 2": ["--jobs", "2"], "--backend ray": ["--backend", "ray"]}
SLOTS = 2


def pin_to_two_cores() -> None:
    """Run the command on 2 of this machine's cores (its Ray workers inherit them)."""
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:SLOTS])


def engine_seconds(start: float, end: float, cells: list[dict]) -> float:
    """Seconds the SLOTS slots waited with a cell left to run: each cell, in order of start,
    goes to the slot that freed first, and waits from then to its start; plus the time from the
    last cell's end to the session's end (its result's way back and the session's close)."""
    free = [start] * SLOTS
    waited = 0.0
    spans = sorted((c["finished_at"] - c["wall_seconds"], c["finished_at"]) for c in cells)
    for begin, finish in spans:
        slot = min(range(SLOTS), key=free.__getitem__)
        waited += max(0.0, begin - free[slot])
        free[slot] = finish
    return waited + max(0.0, end - max(free))


def study_arm(settings: common.Settings, path, name: str, extra: dict):
    rounds = iter(range(10**6))

    def arm() -> float:
        out = settings.tmp / f"study-{name.strip('-').replace(' ', '-')}-{next(rounds)}"
        command = [sys.executable, "-m", "isobn.cli.main", "study", str(path), "--out", str(out)]
        start = time.perf_counter()
        done = subprocess.run(
            command + ARMS[name], capture_output=True, text=True, preexec_fn=pin_to_two_cores
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        lines = [json.loads(x) for x in (out / "sessions.jsonl").read_text().splitlines()]
        start, session = lines[0]["start"], lines[-1]
        cells = [json.loads(p.read_text()) for p in (out / "cells").rglob("*.json")]
        own = sum(cell["wall_seconds"] for cell in cells)
        extra["whole"].append(3600 * len(cells) / seconds)
        extra["overhead"].append(100 * (1 - own / SLOTS / session["wall_seconds"]))
        waited = engine_seconds(start, start + session["wall_seconds"], cells)
        extra["per_cell"].append(100 * waited / own)
        return 3600 * len(cells) / session["wall_seconds"]

    return arm


def run(settings: common.Settings) -> dict:
    common.header("Study on Ray: cells per hour, --backend ray vs --jobs 2 (2 cores)")
    if len(os.sched_getaffinity(0)) < SLOTS:
        raise SystemExit(f"needs {SLOTS} cores")
    size, epochs = (64, 1) if settings.quick else (200, 2)
    path = settings.tmp / "bench-ray-study.toml"
    path.write_text(bench_study.study_text(settings.model_dir(), size, epochs))
    extra = {name: {"whole": [], "overhead": [], "per_cell": []} for name in ARMS}
    arms = {name: study_arm(settings, path, name, extra[name]) for name in ARMS}
    samples = timing.interleaved(arms, settings.repeats)
    rows, results = [], {"cells": 4, "size": size, "epochs": epochs, "arms": {}}
    for name in ARMS:
        figures = {
            "cells_per_hour": timing.median(samples[name]),
            "whole_command_cells_per_hour": timing.median(extra[name]["whole"]),
            "outside_cells_pct": timing.median(extra[name]["overhead"]),
            "per_cell_overhead_pct": timing.median(extra[name]["per_cell"]),
            "samples": samples[name],
            **{f"{key}_samples": values for key, values in extra[name].items()},
        }
        results["arms"][name] = figures
        rows.append(
            [
                name,
                f"{figures['cells_per_hour']:.0f}",
                f"{figures['whole_command_cells_per_hour']:.0f}",
                f"{figures['outside_cells_pct']:.1f}%",
                f"{figures['per_cell_overhead_pct']:.1f}%",
            ]
        )
    headers = ["study (2 cores)", "cells/hour", "whole command", "outside cells", "per cell"]
    common.table(rows, headers)
    results["ratio"] = timing.ratio(samples["--backend ray"], samples["--jobs 2"])
    print(
        f"  4 cells (mr, size {size}, none/isobn x seeds 1-2, {epochs} epochs), "
        f"{settings.model}; median of {settings.repeats} interleaved rounds"
    )
    print(f"  ray / --jobs 2: {timing.format_ratio(results['ratio'])} (session)")
    return results


if __name__ == "__main__":
    common.run_standalone(run, __doc__)
