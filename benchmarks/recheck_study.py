"""Re-run finished cells of a committed study with today's code and compare their results with
the committed records: do code changes move the study's numbers beyond float tolerance?

Each named cell is trained again into a temporary directory exactly as `isobn study` trains it
(isobn.study.runner.run_cell, the study file kept in the results directory), with the
threads per job of the sessions that ran it (1 in the offline study: CPU kernels sum in
another order with more threads). Printed per cell: the dev and test scores, the best epoch,
and the largest relative (and absolute) difference over every number of the final metrics and
of every evaluation (dev metrics, isotropy figures).

    .venv/bin/python benchmarks/recheck_study.py results/offline trec/n500/isobn/seed8 ...
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path


def flatten(value, prefix: str = "") -> dict[str, float]:
    """{"a.b.c": number} of every number in nested dicts and lists."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((str(i), v) for i, v in enumerate(value))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return {prefix: float(value)}
    else:
        return {}
    out: dict[str, float] = {}
    for key, item in items:
        out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def largest_difference(old, new) -> tuple[float, str, float]:
    """The largest relative difference |old - new| / max(|old|, |new|) over the numbers both
    hold (NaN equals NaN; 0 when both are 0), its key, and the largest absolute difference."""
    a, b = flatten(old), flatten(new)
    worst, where, absolute = 0.0, "-", 0.0
    for key in sorted(a.keys() & b.keys()):
        if math.isnan(a[key]) and math.isnan(b[key]):
            continue
        difference = abs(a[key] - b[key])
        relative = difference / max(abs(a[key]), abs(b[key])) if difference else 0.0
        absolute = max(absolute, difference)
        if not relative <= worst:  # NaN against a number counts as the worst
            worst, where = relative, key
    return worst, where, absolute


def threads_of(directory: Path) -> int:
    threads = set()
    for line in (directory / "sessions.jsonl").read_text().splitlines():
        entry = json.loads(line) if line.strip() else {}
        if "threads_per_job" in entry:
            threads.add(entry["threads_per_job"])
    return threads.pop() if len(threads) == 1 else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="a study's results directory")
    parser.add_argument("cells", nargs="+", help="cell keys, e.g. trec/n500/isobn/seed8")
    args = parser.parse_args()

    import torch

    from isobn.study.runner import run_cell
    from isobn.study.spec import load_study

    torch.set_num_threads(threads_of(args.directory))
    study = load_study(args.directory / "study.toml")
    cells = {cell.key: cell for cell in study.cells()}
    print(f"threads {torch.get_num_threads()}; torch {torch.__version__}")
    print(
        "cell | dev old -> new | test old -> new | best epoch | "
        "largest relative difference (where); largest absolute"
    )
    for key in args.cells:
        old = json.loads((args.directory / "cells" / f"{key}.json").read_text())
        with tempfile.TemporaryDirectory(prefix="recheck-") as tmp:
            new = run_cell(study, cells[key], Path(tmp))
        worst, where, absolute = largest_difference(
            {"dev": old["dev"], "test": old["test"], "evaluations": old["evaluations"]},
            {"dev": new["dev"], "test": new["test"], "evaluations": new["evaluations"]},
        )
        print(
            f"{key} | {old['dev_score']:.4f} -> {new['dev_score']:.4f} | "
            f"{old['test_score']:.4f} -> {new['test_score']:.4f} | "
            f"{old['best_epoch']} -> {new['best_epoch']} | {worst:.1e} ({where}); {absolute:.1e}",
            flush=True,
        )


if __name__ == "__main__":
    main()
