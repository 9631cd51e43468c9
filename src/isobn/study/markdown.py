"""RESULTS.md of a study: generated tables and figures, and a verdict written by people.

Everything between the verdict markers is kept when the file is rewritten; everything else
is generated from the finished cells.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import numpy as np

from isobn.study import stats
from isobn.study.spec import Study
from isobn.training.safe_files import write_atomically

VERDICT_START, VERDICT_END = (
    "<!-- verdict: written by hand, kept on rewrite -->",
    "<!-- /verdict -->",
)
_ISO = ("std_cv", "mean_abs_corr", "isoscore", "effective_rank")
MODEL_NOTE = (
    "The packaged MiniLM (all-MiniLM-L6-v2) is a contrastively trained sentence encoder: its "
    "pooled embedding is already far more isotropic than that of the MLM-pretrained BERT of the "
    "IsoBN paper, so there is less for IsoBN to correct. Read the verdict with that in mind."
)


def write_results_markdown(
    study: Study, out: Path, records: list[dict], apart: list[dict] = ()
) -> list[Path]:
    """Write RESULTS.md (and its figures) in `out` from the tabled `records`; the finished
    cells `apart` ({"cell", "reason"}: not declared, other settings or data) are listed after
    the setup, never tabled. Returns the paths written."""
    from isobn.study.figures import study_figures

    figures = study_figures(records, out / "figures")
    path = out / "RESULTS.md"
    verdict = _kept_verdict(path)
    lines = [f"# Study `{study.name}`", "", study.description, ""]
    if study.model == "minilm":
        lines += [f"> {MODEL_NOTE}", ""]
    lines += _pretrained_section(out)
    lines += ["## Verdict", "", VERDICT_START, verdict, VERDICT_END, ""]
    lines += _setup_section(study, out, records)
    if apart:
        lines += [
            "## Finished cells not tabled",
            "",
            f"{len(apart)} finished cell(s) in this directory are not in the tables:",
            "",
            *(f"- `{entry['cell']}`: {entry['reason']}" for entry in apart),
            "",
        ]
    for block in study.blocks:
        lines += _block_section(block, records)
    lines += _isotropy_section(records)
    lines += _epochs_section(records)
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{p.stem}](figures/{p.name})" for p in figures] + [""]
    write_atomically(path, "\n".join(lines).rstrip() + "\n")
    return [path, *figures]


def _kept_verdict(path: Path) -> str:
    if path.is_file():
        text = path.read_text()
        if VERDICT_START in text and VERDICT_END in text:
            return text.split(VERDICT_START, 1)[1].split(VERDICT_END, 1)[0].strip()
    return "_Not written yet: it is written from the tables below once the cells have run._"


UNDEFINED = "undefined"  # a NaN score: a correlation on constant targets (isobn.tasks.metrics)


def number_text(value: float | None, digits: int = 1, sign: str = "", kind: str = "f") -> str:
    """`value` formatted ``{sign}.{digits}{kind}``; "-" when there is none, "undefined" when it
    is NaN, never "nan"."""
    if value is None:
        return "-"
    return UNDEFINED if np.isnan(value) else f"{value:{sign}.{digits}{kind}}"


def _sig(value: float | None) -> str:
    """Three significant digits: isotropy metrics span 1e-5 (a collapsed embedding) to 1."""
    return number_text(value, 3, kind="g")


def _ci(interval: tuple[float, float] | None, digits: int = 1) -> str:
    if interval is None:
        return "-"
    if np.isnan(interval).any():
        return UNDEFINED
    return f"[{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def _p(value: float | None) -> str:
    small = value is not None and value < 0.001  # NaN is not small: "undefined"
    return f"{value:.1e}" if small else number_text(value, 3)


def _size(size: int | None) -> str:
    return "full" if size is None else str(size)


def _pretrained_section(out: Path) -> list[str]:
    path = out / "pretrained_isotropy.json"
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    lines = [
        "## Pre-trained isotropy of the model",
        "",
        f"The {data['pooling']} embedding of the pre-trained model over each task's dev split "
        "(before any fine-tuning; `isobn analyze`):",
        "",
        "| task | std_cv | mean_abs_corr | isoscore | effective_rank |",
        "|---|---|---|---|---|",
    ]
    for task, report in data["tasks"].items():
        lines.append(f"| {task} | " + " | ".join(_sig(report.get(k)) for k in _ISO) + " |")
    return lines + [""]


def _setup_section(study: Study, out: Path, records: list[dict]) -> list[str]:
    planned = study.cells()
    done = {(r["task"], r["size"], r["method"], r["seed"]) for r in records}
    settings = ", ".join(f"{k} {v}" for k, v in study.train.items())
    lines = [
        "## Set-up",
        "",
        f"- Model: `{study.model}`; settings for every cell and method: {settings}.",
        "- Each training size is one fixed stratified subsample of the training set, the same "
        "for every seed and method; seeds vary the head's initialisation, dropout and data "
        "order. The best dev epoch is kept (early stopping on dev, as the paper); test scores "
        "come from that checkpoint and are never used for selection.",
        f"- Cells finished: {len(done)} of {len(planned)} planned.",
    ]
    missing = _missing(planned, done)
    if missing:
        lines.append(f"- Not (yet) run: {missing}.")
    lines += _time_lines(out, records)
    lines += [
        f"- isobn {_version()}, commit {_commit()} (the tables were written by this version).",
        "",
        "<details><summary>Study file</summary>",
        "",
        "```toml",
        study.source.rstrip(),
        "```",
        "</details>",
        "",
    ]
    return lines


def _time_lines(out: Path, records: list[dict]) -> list[str]:
    """Commands, machines and wall time of the sessions that ran the cells, and the machine
    time the cells took (their wall times summed)."""
    sessions = _sessions(out)
    walls = []
    for session in sessions:
        if "wall_seconds" in session:
            walls.append(session["wall_seconds"])
            continue
        ends = [r["finished_at"] for r in records if r.get("session") == session["id"]]
        if ends:  # killed before its end line: bounded by its last finished cell
            walls.append(max(ends) - session["start"])
    machine_time = sum(r["wall_seconds"] for r in records) / 3600
    lines = [f"- Cell time: {machine_time:.2f} h (the cells' wall times summed)."]
    if records:
        share = [1 - r["train_seconds"] / r["wall_seconds"] for r in records if r["wall_seconds"]]
        lines.append(
            f"- Per-cell cost outside the training loop (model load, data, test evaluation, "
            f"checkpoint clean-up): median {100 * float(np.median(share)):.1f}% of a cell's wall "
            f"time (max {100 * max(share):.1f}%)."
        )
    if sessions:
        commands = sorted({s["command"] for s in sessions if s.get("command")})
        machines = sorted({s["machine"] for s in sessions})
        jobs = sorted({str(s["jobs"]) for s in sessions})
        lines += [
            f"- Wall time: {sum(walls) / 3600:.2f} h over {len(sessions)} recorded session(s) "
            f"with --jobs {', '.join(jobs)}, on {'; '.join(machines)}.",
            "- Command: " + "; ".join(f"`{c}`" for c in commands),
        ]
    unrecorded = [r for r in records if not r.get("session")]
    if unrecorded:
        lines.append(
            f"- {len(unrecorded)} cells came from a session that recorded no start (an earlier "
            "isobn version): their time is in the cell time only."
        )
    return lines


def relative_command(argv: list[str], cwd: Path) -> str:
    """The command as run, for RESULTS.md: absolute paths under `cwd` (also in `--opt=PATH`)
    written relative to it, so the line reruns from the same place on another machine; paths
    outside `cwd` stay absolute. Quoted as a shell would need it."""

    def relative(token: str) -> str:
        path = Path(os.path.normpath(token))
        if not path.is_absolute():
            return token
        for inside, base in ((path, Path(cwd)), (path.resolve(), Path(cwd).resolve())):
            if inside.is_relative_to(base):  # as written first, then with links resolved
                return str(inside.relative_to(base))
        return token

    tokens = []
    for token in argv:
        option, equals, value = token.partition("=")
        if equals and option.startswith("--"):
            tokens.append(f"{option}={relative(value)}")
        else:
            tokens.append(relative(token))
    return shlex.join(tokens)


def _missing(planned, done) -> str:
    counts: dict[tuple, int] = {}
    for cell in planned:
        if (cell.task, cell.size, cell.method, cell.seed) not in done:
            key = (cell.blocks[0], cell.task, _size(cell.size))
            counts[key] = counts.get(key, 0) + 1
    return "; ".join(f"{b} {t} n={s}: {n} cells" for (b, t, s), n in counts.items())


def _sessions(out: Path) -> list[dict]:
    path = out / "sessions.jsonl"
    if not path.is_file():
        return []
    merged: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        entry = json.loads(line) if line.strip() else {}
        if "id" in entry:
            merged.setdefault(entry["id"], {}).update(entry)
    return [s for s in merged.values() if "start" in s]


def _version() -> str:
    from isobn import __version__

    return __version__


def _commit() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def _block_section(block, records: list[dict]) -> list[str]:
    mine = [
        r
        for r in records
        if r["task"] in block.tasks
        and r["size"] in block.sizes
        and r["method"] in block.methods
        and r["seed"] in block.seeds
    ]
    lines = [f"## Block `{block.name}`", ""]
    if not mine:
        return lines + ["No finished cells yet.", ""]
    groups = stats.group(mine)
    lines += _scores_table(groups, block.methods)
    lines += _paired_table(groups, block.methods)
    lines += _average_table(groups, block.methods)
    return lines


def _scores_table(groups, methods) -> list[str]:
    lines = [
        "Scores (main metric x 100) over seeds. `failed`: runs whose dev score is no better "
        "than the majority class.",
        "",
        "| task | size | method | n | dev median ± std | test median ± std | test mean [95% CI] "
        "| failed | best epoch median (range) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (task, size), by_method in sorted(groups.items(), key=_group_order):
        for method in [m for m in methods if m in by_method]:
            runs = by_method[method]
            dev = stats.summary(list(stats.scores(runs, "dev").values()))
            test_scores = list(stats.scores(runs, "test").values())
            test = stats.summary(test_scores) if test_scores else None
            epochs = [r["best_epoch"] for r in runs.values()]
            fails = sum(stats.failed(r) for r in runs.values())
            lines.append(
                f"| {task} | {_size(size)} | `{method}` | {dev['n']} | "
                f"{number_text(dev['median'])} ± {number_text(dev['std'])} | "
                + (
                    f"{number_text(test['median'])} ± {number_text(test['std'])} | "
                    f"{number_text(test['mean'])} {_ci(test['ci'])} | "
                    if test
                    else "- | - | "
                )
                + f"{fails}/{len(runs)} | {number_text(float(np.median(epochs)), 1)} "
                f"({number_text(min(epochs), 0)}-{number_text(max(epochs), 0)}) |"
            )
    return lines + [""]


def _group_order(item):
    (task, size), _ = item
    return task, -1 if size is None else size


def _paired_table(groups, methods) -> list[str]:
    lines = [
        "Seed-paired differences against `none` (method - none, x 100): mean [95% bootstrap CI], "
        "wins/ties/losses and the Wilcoxon signed-rank p-value.",
        "",
        "| task | size | method | n | dev diff [95% CI] | dev W/T/L | dev p | test diff [95% CI] "
        "| test W/T/L | test p |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (task, size), by_method in sorted(groups.items(), key=_group_order):
        base = by_method.get(stats.BASELINE)
        if base is None:
            continue
        for method in [m for m in methods if m in by_method and m != stats.BASELINE]:
            cells = []
            for split in ("dev", "test"):
                result = stats.paired(
                    stats.scores(by_method[method], split), stats.scores(base, split)
                )
                if result is None:
                    cells.append("- | - | -")
                    continue
                undefined = result["undefined"]
                cells.append(
                    f"{number_text(result['mean_diff'], 2, '+')} {_ci(result['ci'], 2)} | "
                    f"{result['wins']}/{result['ties']}/{result['losses']}"
                    + (f" ({undefined} undefined)" if undefined else "")
                    + f" | {_p(result['p_wilcoxon'])}"
                )
                n = result["n"]
            lines.append(
                f"| {task} | {_size(size)} | `{method}` | {n} | " + " | ".join(cells) + " |"
            )
    return lines + [""]


def _average_table(groups, methods) -> list[str]:
    """The paper's summary: per size, the average over tasks of each method's median."""
    sizes = sorted({size for _, size in groups}, key=lambda s: -1 if s is None else s)
    lines = []
    for size in sizes:
        tasks = sorted(task for task, s in groups if s == size)
        if len(tasks) < 2:
            continue
        row = []
        for method in methods:
            averages = []
            for split in ("dev", "test"):  # "-" when a task lacks the method's scores
                per_task = [stats.scores(groups[(t, size)].get(method, {}), split) for t in tasks]
                medians = [np.median(list(s.values())) for s in per_task if s]
                whole = len(medians) == len(tasks)
                averages.append(number_text(float(np.mean(medians)), 2) if whole else "-")
            row.append(f"| `{method}` | {averages[0]} | {averages[1]} |")
        lines += [
            f"Average over {', '.join(tasks)} of the per-task median (size {_size(size)}; "
            "the paper's summary):",
            "",
            "| method | dev | test |",
            "|---|---|---|",
            *row,
            "",
        ]
    return lines


def _isotropy_section(records: list[dict]) -> list[str]:
    groups = stats.group(records)
    lines = [
        "## Isotropy of the pooled embedding at the best checkpoint",
        "",
        "Medians over seeds, on the dev split, before the method's transform and after it. "
        "`rho(test)`: Spearman correlation, over every run of the task and size, between the "
        "IsoScore after the transform and the test score.",
        "",
        "| task | size | method | std_cv before/after | mean_abs_corr before/after "
        "| isoscore before/after | effective_rank before/after |",
        "|---|---|---|---|---|---|---|",
    ]
    correlations = []
    for (task, size), by_method in sorted(groups.items(), key=_group_order):
        xs, ys = [], []
        for method, runs in by_method.items():
            cells = []
            for key in _ISO:
                pair = []
                for side in ("before_norm", "after_norm"):
                    values = [r["isotropy_at_best"].get(side, {}).get(key) for r in runs.values()]
                    values = [v for v in values if v is not None]
                    pair.append(_sig(float(np.median(values))) if values else "-")
                cells.append(" / ".join(pair))
            lines.append(f"| {task} | {_size(size)} | `{method}` | " + " | ".join(cells) + " |")
            for r in runs.values():
                iso = r["isotropy_at_best"].get("after_norm", {}).get("isoscore")
                score = r.get("test_score")
                if iso is not None and score is not None and np.isfinite([iso, score]).all():
                    xs.append(iso)
                    ys.append(score)
        rho = stats.spearman(xs, ys)
        if rho:
            correlations.append(
                f"{task} n={_size(size)}: rho {rho[0]:+.2f} (p {_p(rho[1])}, {len(xs)} runs)"
            )
    lines.append("")
    if correlations:
        lines += ["IsoScore (after) against test score: " + "; ".join(correlations) + ".", ""]
    return lines


def _epochs_section(records: list[dict]) -> list[str]:
    at_last = [r for r in records if r["best_epoch"] == r["config"]["epochs"]]
    stopped = sum(bool(r["stopped_early"]) for r in records)
    counts: dict[float, int] = {}
    for r in records:
        counts[r["best_epoch"]] = counts.get(r["best_epoch"], 0) + 1
    histogram = ", ".join(f"{number_text(k, 0)}: {v}" for k, v in sorted(counts.items()))
    return [
        "## Best epochs",
        "",
        f"Best dev epoch over all {len(records)} runs (epoch: runs): {histogram}. "
        f"{len(at_last)} runs peaked at the last allowed epoch (under-training would show as "
        f"most runs there); {stopped} stopped early (no dev improvement for `patience` "
        "evaluations).",
        "",
    ]
