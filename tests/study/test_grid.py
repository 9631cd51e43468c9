"""Studies with a hyper-parameter grid: the file, the cells, the runners (jobs, shards, resume,
Ray, --report-only) and the tuned tables, checked against an independent recomputation from
results.csv."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from isobn.cli.main import main
from isobn.errors import UserError
from isobn.study import tuning
from isobn.study.runner import finished_cells, run_jobs
from isobn.study.spec import load_study, parse_study

ROOT = Path(__file__).resolve().parents[2]

HEAD = """
[study]
name = "g"
model = "minilm"
[train]
epochs = 1
[[block]]
name = "tuned"
tasks = ["mr"]
sizes = [32]
methods = ["none", "isobn"]
seeds = [1, 2]
"""


def parse(text: str):
    return parse_study(text, Path("g.toml"))


def write_grid_study(path: Path, tiny_bert: str, files: dict, seeds=(1, 2)) -> Path:
    """test_study's tiny study, its main block only, with 2 learning rates: none and isobn x
    2 points x `seeds` (8 cells with two seeds)."""
    from test_study import write_study

    text = write_study(path, tiny_bert, files, seeds=seeds).read_text()
    text = text[: text.index('[[block]]\nname = "ablation"')]
    path.write_text(text + "[block.grid]\nlearning_rate = [1e-3, 3e-4]\n")
    return path


# ---- the study file and its cells -------------------------------------------------------


def test_a_grid_multiplies_the_cells_and_names_each_point():
    study = parse(HEAD + "[block.grid]\nlearning_rate = [2e-5, 1e-4]\nbatch_size = [16, 32]\n")
    cells = study.cells()
    assert len(cells) == 1 * 1 * 2 * 4 * 2  # tasks x sizes x methods x points x seeds
    assert cells[0].key == "mr/n32/none/batch_size=16,learning_rate=2e-05/seed1"
    assert len({c.key for c in cells}) == len(cells)
    # seed by seed: the first 8 cells are every method at every point with seed 1
    assert {c.seed for c in cells[:8]} == {1} and {c.method for c in cells[:8]} == {"none", "isobn"}
    by_key = {c.key: c for c in cells}
    cfg = study.config(by_key["mr/n32/isobn/batch_size=32,learning_rate=0.0001/seed2"], out="x")
    assert (cfg.batch_size, cfg.learning_rate, cfg.seed, cfg.method) == (32, 1e-4, 2, "isobn")


def test_without_a_grid_cells_and_keys_are_as_before():
    study = parse(HEAD)
    assert [c.key for c in study.cells()] == [
        "mr/n32/none/seed1",
        "mr/n32/isobn/seed1",
        "mr/n32/none/seed2",
        "mr/n32/isobn/seed2",
    ]


def test_two_blocks_naming_one_grid_cell_run_it_once():
    grid = "[block.grid]\nlearning_rate = [2e-5, 1e-4]\n"
    second = (
        HEAD.split("[[block]]")[1]
        .replace('"tuned"', '"again"')
        .replace('"isobn"', '"isobn:beta=0.25"')
    )
    study = parse(HEAD + grid + "[[block]]" + second + "[block.grid]\nlearning_rate = [1e-4]\n")
    cells = study.cells()
    assert len(cells) == 8 + 2  # the second block adds only its new method's cells
    shared = next(c for c in cells if c.key == "mr/n32/none/learning_rate=0.0001/seed1")
    assert shared.blocks == ("tuned", "again")


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ("method = ['isobn']", "'method' cannot be a grid axis; method parameters go in the"),
        ("seed = [1, 2]", "'seed' cannot be a grid axis; a grid may tune"),
        ("train_file = ['a.csv']", "'train_file' cannot be a grid axis"),
        ("learning_rate = []", "learning_rate must be a non-empty list"),
        ("learning_rate = 1e-5", "learning_rate must be a non-empty list"),
        ("learning_rate = [1e-5, 1e-5]", "learning_rate lists a value twice"),
        ("batch_size = [16, '32']", "batch_size must be an integer, got '32'"),
        ("learning_rate = [-1.0]", "learning_rate"),  # the setting's own rule
    ],
)
def test_a_bad_grid_is_one_line(grid, message):
    with pytest.raises(UserError) as error:
        parse(HEAD + "[block.grid]\n" + grid + "\n")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_plan_states_the_grid_and_the_cell_count(tmp_path, capsys):
    path = tmp_path / "g.toml"
    path.write_text(HEAD + "[block.grid]\nlearning_rate = [2e-5, 5e-5, 1e-4]\n")
    assert main(["study", str(path), "--out", str(tmp_path / "out"), "--plan"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        "block tuned: 1 task x 1 size x 2 methods x 3 grid points (learning_rate: 3) x 2 seeds"
        " = 12 cells" in lines
    )
    assert lines[-1] == "12 cells, 0 finished"
    assert not (tmp_path / "out").exists()


def test_the_packaged_tuned_studies_plan():
    tuned = load_study(ROOT / "studies" / "offline-tuned.toml")
    assert len(tuned.cells()) == 60
    glue = load_study(ROOT / "studies" / "glue-tuned.toml")
    assert len(glue.cells()) == len(glue.blocks[0].points) * 8 * 2 * len(glue.blocks[0].seeds)


# ---- the estimators, by hand ---------------------------------------------------------------


def test_expected_best_by_hand():
    # dev {1, 2, 3}, n = 2: P(max is the i-th) = (i/3)^2 - ((i-1)/3)^2 = 1/9, 3/9, 5/9
    assert tuning.expected_best([3.0, 1.0, 2.0], 2) == pytest.approx((1 + 2 * 3 + 3 * 5) / 9)
    assert tuning.expected_best([3.0, 1.0, 2.0], 1) == pytest.approx(2.0)  # the mean
    assert tuning.expected_best([5.0, 7.0], 50) == pytest.approx(7.0, abs=1e-12)  # -> the max
    assert np.isnan(tuning.expected_best([1.0, float("nan")], 2))


def test_expected_best_equals_opdas_average_tuning_curve():
    from opda.nonparametric import EmpiricalDistribution

    dev = [81.2, 79.5, 83.0, 80.1, 82.4, 79.9, 81.7]
    ns = [1, 2, 3, 7, 20]
    ours = [tuning.expected_best(dev, n) for n in ns]
    assert ours == pytest.approx(EmpiricalDistribution(dev).average_tuning_curve(ns))


def test_expected_test_at_best_dev_by_hand():
    # sorted by dev: (1, 10), (2, 20), (3, 40); n = 2: weights 1/9, 3/9, 5/9
    assert tuning.expected_test_at_best([2.0, 1.0, 3.0], [20.0, 10.0, 40.0], 2) == pytest.approx(
        (10 + 3 * 20 + 5 * 40) / 9
    )
    # dev ties share their mass: dev (1, 2, 2), n = 3: weights 1/27, 7/27, 19/27; the tie's
    # 26/27 goes to the mean of its tests (20 + 40) / 2
    assert tuning.expected_test_at_best([1.0, 2.0, 2.0], [10.0, 20.0, 40.0], 3) == pytest.approx(
        (10 + 26 * 30) / 27
    )


def test_the_band_holds_the_estimate_and_needs_enough_trials():
    rng = np.random.default_rng(3)
    dev = list(np.round(rng.normal(80, 2, 15), 1))
    ns = [1, 2, 5, 15]
    lower, upper = tuning.expected_best_band(dev, ns, 0.0, 100.0)
    point = [tuning.expected_best(dev, n) for n in ns]
    assert np.all(lower <= point) and np.all(point <= upper)
    assert np.all(np.diff(lower) >= 0) and np.all(np.diff(upper) >= 0)
    assert tuning.expected_best_band(dev[: tuning.BAND_MIN_TRIALS - 1], ns, 0, 100) is None


def test_the_tuned_point_is_the_best_dev_median_first_on_ties():
    a, b, c = (("lr", 1),), (("lr", 2),), (("lr", 3),)
    order = [a, b, c]
    assert tuning.choose_point({a: [1, 5, 5], b: [4, 4, 9], c: [3]}, order) == a
    assert tuning.choose_point({a: [4], b: [5, float("nan")], c: [4]}, order) == a  # NaN: worst
    assert tuning.choose_point({}, order) is None
    assert tuning.budgets(15) == [1, 2, 3, 5, 10, 15] and tuning.budgets(1) == [1]


# ---- the tables against an independent recomputation from results.csv ---------------------


def write_synthetic_cells(study, out: Path) -> None:
    """A record for every cell of `study` (mr and trec, none and isobn, 3 learning rates x 4
    seeds), with scores that favour one rate per method, seed noise and ties."""
    from dataclasses import asdict

    from isobn.study.record import cell_path, run_path

    rng = np.random.default_rng(7)
    best = {("mr", "none"): 5e-5, ("mr", "isobn"): 1e-4, ("trec", "none"): 2e-5}
    for cell in study.cells():
        rate = dict(cell.grid)["learning_rate"]
        bonus = 2.0 * (rate == best.get((cell.task, cell.method), 2e-5))
        dev = 80 + bonus + float(np.round(rng.normal(0, 1), 1))
        test = dev - 1 + float(np.round(rng.normal(0, 1), 1))
        record = {
            "task": cell.task,
            "size": cell.size,
            "method": cell.method,
            "seed": cell.seed,
            "grid": dict(cell.grid),
            "main_metric": "accuracy",
            "dev_score": dev,
            "test_score": test,
            "majority_dev_score": 50.0,
            "best_epoch": 2.0,
            "epochs_run": 3,
            "stopped_early": False,
            "isotropy_at_best": {},
            "train_seconds": 1.0,
            "wall_seconds": 2.0,
            "finished_at": 0.0,
            "config": {**asdict(study.config(cell, out="")), "out": str(run_path(cell))},
        }
        cell_path(out, cell).parent.mkdir(parents=True, exist_ok=True)
        cell_path(out, cell).write_text(json.dumps(record))


def recompute_from_csv(path: Path) -> dict:
    """Tuned points, seed-paired test differences and expected best dev, from results.csv
    alone, with plain Python and numpy (not isobn's functions)."""
    rows = list(csv.DictReader(path.open()))
    pools: dict[tuple, dict[float, dict[int, tuple[float, float]]]] = {}
    for row in rows:
        key = (row["task"], row["method"])
        point = float(row["grid.learning_rate"])
        pools.setdefault(key, {}).setdefault(point, {})[int(row["seed"])] = (
            float(row["dev_score"]),
            float(row["test_score"]),
        )
    grid_order = [2e-5, 5e-5, 1e-4]
    chosen = {}
    for key, points in pools.items():
        medians = {p: np.median([d for d, _ in points[p].values()]) for p in grid_order}
        chosen[key] = max(grid_order, key=lambda p: (medians[p], -grid_order.index(p)))
    diffs = {}
    for task in ("mr", "trec"):
        ours = pools[(task, "isobn")][chosen[(task, "isobn")]]
        base = pools[(task, "none")][chosen[(task, "none")]]
        diffs[task] = np.mean([ours[s][1] - base[s][1] for s in sorted(ours)])
    expected = {}
    for key, points in pools.items():
        values = sorted(d for by_seed in points.values() for d, _ in by_seed.values())
        big_n = len(values)
        for n in (1, 2, 3, 5, 10, big_n):
            weights = [(i / big_n) ** n - ((i - 1) / big_n) ** n for i in range(1, big_n + 1)]
            expected[(*key, n)] = sum(v * w for v, w in zip(values, weights))
    return {"chosen": chosen, "diffs": diffs, "expected": expected}


def test_tuned_tables_equal_a_recomputation_from_results_csv(tmp_path):
    from isobn.study.results import write_study_results

    study_path = tmp_path / "s.toml"
    study_path.write_text(
        HEAD.replace('["mr"]', '["mr", "trec"]')
        .replace("sizes = [32]", "sizes = [500]")
        .replace("seeds = [1, 2]", "seeds = [1, 2, 3, 4]")
        + "[block.grid]\nlearning_rate = [2e-5, 5e-5, 1e-4]\n"
    )
    study = load_study(study_path)
    out = tmp_path / "out"
    write_synthetic_cells(study, out)
    write_study_results(study, out)
    truth = recompute_from_csv(out / "results.csv")
    text = (out / "RESULTS.md").read_text()
    tuned = text.split("### Tuned comparison", 1)[1].split("### Tuned\n", 1)[0]
    for task, diff in truth["diffs"].items():
        row = next(
            line for line in tuned.splitlines() if line.startswith(f"| {task} | 500 | `isobn` |")
        )
        test_cell = row.split(" | ")[7]  # task, size, method, n, dev diff, W/T/L, p, test diff
        assert test_cell.split(" ")[0] == f"{diff:+.2f}"
    scores = text.split("### Tuned\n", 1)[1].split("### Sensitivity", 1)[0]
    for (task, method), rate in truth["chosen"].items():
        row = next(
            line
            for line in scores.splitlines()
            if line.startswith(f"| {task} | 500 | `{method}` |")
        )
        assert f"`learning_rate={rate!r}`" in row
    budget = text.split("### Expected best dev score against budget", 1)[1]
    for (task, method, n), value in truth["expected"].items():
        row = next(
            line
            for line in budget.splitlines()
            if line.startswith(f"| {task} | 500 | `{method}` |")
        )
        curve = dict(part.split(": ", 1) for part in row.split(" | ")[4].split("; "))
        assert curve[str(n)].split(" / ")[0] == f"{value:.1f}"
    assert "![sensitivity](figures/sensitivity-tuned.png)" in text
    assert (out / "figures" / "budget-tuned-mr-n500.png").is_file()


# ---- the committed offline study still tables byte for byte --------------------------------


def test_the_committed_offline_results_rewrite_byte_for_byte(tmp_path):
    """RESULTS.md, results.json and results.csv rewritten from the committed records equal the
    committed files; only the line naming the isobn version and commit that wrote them may
    differ."""
    import shutil

    out = tmp_path / "offline"
    shutil.copytree(ROOT / "results" / "offline", out)
    assert (
        main(["study", str(ROOT / "studies" / "offline.toml"), "--out", str(out), "--report-only"])
        == 0
    )
    version_line = re.compile(
        r"^- isobn \S+, commit \S+ \(the tables were written by this version\)\.$", re.M
    )
    committed = (ROOT / "results" / "offline" / "RESULTS.md").read_text()
    rewritten = (out / "RESULTS.md").read_text()
    assert len(version_line.findall(committed)) == 1
    assert version_line.sub("", rewritten) == version_line.sub("", committed)
    for name in ("results.json", "results.csv"):
        assert (out / name).read_bytes() == (ROOT / "results" / "offline" / name).read_bytes()


# ---- grids through the runners -------------------------------------------------------------


def metrics(out: Path) -> dict:
    return {
        (r["method"], r["grid"]["learning_rate"], r["seed"]): (r["dev"], r["test"])
        for r in finished_cells(out)
    }


@pytest.mark.slow
def test_a_grid_study_runs_with_jobs_shards_resume_and_report_only(
    tmp_path, tiny_bert, sentiment_files, capsys
):
    path = write_grid_study(tmp_path / "s.toml", tiny_bert, sentiment_files)
    study = load_study(path)
    assert len(study.cells()) == 8
    # two shards by hand, then --jobs 2 over what is left: every cell once
    assert (
        main(
            ["study", str(path), "--out", str(tmp_path / "a"), "--shard", "1/2", "--max-cells", "1"]
        )
        == 0
    )
    assert (
        main(
            ["study", str(path), "--out", str(tmp_path / "a"), "--shard", "2/2", "--max-cells", "1"]
        )
        == 0
    )
    assert len(finished_cells(tmp_path / "a")) == 2
    assert main(["study", str(path), "--out", str(tmp_path / "a"), "--jobs", "2"]) == 0
    records = finished_cells(tmp_path / "a")
    assert len(records) == 8 and {r["grid"]["learning_rate"] for r in records} == {1e-3, 3e-4}
    assert all(r["config"]["learning_rate"] == r["grid"]["learning_rate"] for r in records)
    # one process, one job, from scratch: the same numbers, cell by cell
    run_jobs(study, tmp_path / "b", threads=1)
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    # --report-only rewrites the same tables from the records
    first = (tmp_path / "a" / "RESULTS.md").read_text()
    assert main(["study", str(path), "--out", str(tmp_path / "a"), "--report-only"]) == 0
    assert (tmp_path / "a" / "RESULTS.md").read_text() == first
    assert "### Tuned comparison" in first and "### Sensitivity" in first
    header, *rows = (tmp_path / "a" / "results.csv").read_text().splitlines()
    assert header.startswith("task,size,method,seed,grid.learning_rate,main_metric,")
    assert len(rows) == 8


@pytest.mark.slow
def test_a_grid_study_on_the_packaged_model_end_to_end(tmp_path, capsys):
    """8 cells of the packaged MiniLM on mr (32 training sentences, 64 per evaluation split):
    the tables name each method's tuned point and draw the grid's figures."""
    path = tmp_path / "g.toml"
    path.write_text(
        HEAD.replace(
            "[train]\n", "[train]\nmax_eval = 64\nbatch_size = 16\nisotropy_examples = 64\n"
        )
        + "[block.grid]\nlearning_rate = [5e-5, 1e-4]\n"
    )
    out = tmp_path / "out"
    assert main(["study", str(path), "--out", str(out), "--jobs", "2"]) == 0
    records = finished_cells(out)
    assert len(records) == 8
    text = (out / "RESULTS.md").read_text()
    for method in ("none", "isobn"):
        row = next(
            line for line in text.split("### Tuned\n")[1].splitlines() if f"| `{method}` |" in line
        )
        assert re.search(r"`learning_rate=(5e-05|0\.0001)`", row)
    assert {p.name for p in (out / "figures").iterdir()} >= {
        "sensitivity-tuned.png",
        "budget-tuned-mr-n32.png",
    }
