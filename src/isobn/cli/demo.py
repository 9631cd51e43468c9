"""`isobn demo`: the main job on the embedded default (MiniLM on movie reviews).

1. isotropy of the pre-trained pooled embedding ([CLS] and pooler) of 1,000 dev sentences;
2. fine-tune with `--method none` and `--method isobn`, same seed, on a stratified subset of `mr`
   (defaults: 2,000 training sentences, 500 dev and 500 test, 3 epochs, max length 64);
3. the comparison table;
4. the IsoBN paper's picture through `isobn analyze`'s path: per-dimension std histograms and
   correlation heatmaps of the pre-trained embedding and of the two fine-tuned ones (before and
   after IsoBN), on the same 1,000 dev sentences, with report.md, under --out/analysis.
Everything is under --out (printed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from isobn.cli.options import add_setting
from isobn.training.config import TrainConfig

DEMO_SETTINGS = dict(  # sized to finish within 10 minutes on 2 CPU cores
    task="mr",
    model="minilm",
    max_train=2000,
    max_eval=500,
    epochs=3,
    max_length=64,
    batch_size=32,
    learning_rate=5e-5,
    log_every_steps=10,
)
DEV_SENTENCES = 1000  # measured for isotropy (steps 1 and 4)
NORMS = ("none", "isobn")
LABELS = {"pretrained": "pre-trained", "none": "fine-tuned", "isobn": "fine-tuned with IsoBN"}
TABLE_KEYS = (
    "std_mean",
    "std_cv",
    "dead_dims",
    "mean_abs_corr",
    "isoscore",
    "effective_rank",
    "top1_pc_share",
    "avg_cosine",
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="pre-trained isotropy, then none vs isobn on movie reviews (MiniLM), with figures",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_setting(parser, TrainConfig, "out", default="runs/demo")
    add_setting(parser, TrainConfig, "seed")
    for name in ("max_train", "epochs"):
        add_setting(parser, TrainConfig, name, default=DEMO_SETTINGS[name])
    parser.set_defaults(run=run)


def print_table(reports: dict[str, dict[str, float]]) -> None:
    """Markdown table of TABLE_KEYS, one row per embedding (3 significant digits)."""
    print("| embedding | " + " | ".join(TABLE_KEYS) + " |")
    print("|---|" + "---|" * len(TABLE_KEYS))
    for name, report in reports.items():
        print(f"| {name} | " + " | ".join(f"{report[k]:.3g}" for k in TABLE_KEYS) + " |")


def analysis_config(out: Path, settings: dict):
    """The `isobn analyze` settings of steps 1 and 4 (saved in isotropy.json): every one of
    the first DEV_SENTENCES dev sentences of mr, at the training max length."""
    from isobn.analysis import AnalysisConfig

    return AnalysisConfig(
        out=str(out / "analysis"),
        models=[f"{LABELS['pretrained']}={settings['model']}"],
        task=settings["task"],
        max_eval=DEV_SENTENCES,
        split="dev",
        max_examples=None,
        max_length=settings["max_length"],
    )


def run(args: argparse.Namespace) -> int:
    import time

    from isobn import isotropy
    from isobn.analysis import embed, load_examples, parse_model_spec
    from isobn.analysis.run import analysis_device
    from isobn.training.build import require_for_run
    from isobn.training.checkpoint import check_writable_directory, ensure_writable_directory
    from isobn.training.safe_files import write_json_atomically
    from isobn.training.train import TrainConfig

    started = time.perf_counter()
    out = Path(args.out)
    check_writable_directory(out)  # created once the model and the data have loaded
    settings = {**DEMO_SETTINGS, "max_train": args.max_train, "epochs": args.epochs}
    config = TrainConfig(out=str(out / "runs"), seed=args.seed, **settings)
    config.validate()  # before any work
    require_for_run(config)  # the packaged MiniLM and the mr sentences, both named if missing
    print(f"isobn demo: MiniLM on movie reviews (mr); output in {out.resolve()}")

    cfg = analysis_config(out, settings)
    task, examples, split = load_examples(cfg)
    print(f"\n1. Isotropy of the pre-trained embedding over {len(examples)} dev sentences")
    device = analysis_device(cpu=False)
    pretrained = embed(
        parse_model_spec(cfg.models[0]),
        examples,
        pooling="all",
        max_length=cfg.max_length,
        batch_size=cfg.batch_size,
        device=device,
    )
    reports = {p: isotropy.report(pretrained.pooled[p]) for p in ("cls", "pooler")}
    ensure_writable_directory(out)
    write_json_atomically(out / "pretrained_isotropy.json", reports)
    print_table(reports)

    run_dirs = fine_tune(out, settings, args.seed)
    picture(cfg, task.name, split, examples, pretrained, run_dirs, device)
    elapsed = time.perf_counter() - started
    print(f"\ndemo finished in {elapsed / 60:.1f} min; everything is in {out.resolve()}")
    return 0


def fine_tune(out: Path, settings: dict, seed: int) -> dict[str, Path]:
    """Steps 2 and 3: none vs isobn, the result tables; returns the run directory per norm."""
    from isobn.training.experiment import run_directory, run_experiment
    from isobn.training.report import markdown
    from isobn.training.train import TrainConfig

    print(
        f"\n2. Fine-tuning none vs isobn, seed {seed}: {settings['max_train']} training "
        f"sentences, {settings['max_eval']} dev, {settings['max_eval']} test, "
        f"{settings['epochs']} epochs"
    )
    base = TrainConfig(out=str(out / "runs"), seed=seed, **settings)
    # best/ for step 4's analysis; last/ is removed as each run finishes
    results = run_experiment(base, [settings["task"]], list(NORMS), [seed], keep_best=True)

    print("\n3. Comparison (accuracy x 100)\n")
    print(markdown(results))
    if results.get("test"):
        print(markdown(results["test"]))
    return {norm: run_directory(Path(base.out), settings["task"], norm, seed) for norm in NORMS}


def collapse_note(table: dict[str, dict[str, float]]) -> str:
    """The line that explains the fine-tuned embeddings' IsoScore of ~0, with their measured
    effective rank."""
    ranks = [
        report["effective_rank"]
        for name, report in table.items()
        if not name.startswith(LABELS["pretrained"])
    ]
    low, high = min(ranks), max(ranks)
    span = f"{low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}-{high:.1f}"
    return (
        "An IsoScore near 0 after fine-tuning is expected, with or without IsoBN: fine-tuning "
        f"collapses the pooled embedding onto the few directions the classifier separates "
        f"(effective rank {span} here, on a binary task)."
    )


def picture(cfg, task: str, split: str, examples, pretrained, run_dirs, device: str) -> None:
    """Step 4: the analysis of the pre-trained and the two fine-tuned embeddings (the pooling
    they were trained on; IsoBN's before and after the norm) of the step-1 sentences."""
    from dataclasses import replace

    from isobn.analysis import ModelEmbeddings, embed, parse_model_spec, write_analysis
    from isobn.analysis.sources import default_pooling

    specs = [f"{LABELS[norm]}={run_dirs[norm]}" for norm in NORMS]
    sources = [parse_model_spec(spec) for spec in specs]
    pooling = default_pooling(sources)  # the runs' own pooling
    models = [ModelEmbeddings(pretrained.source, {pooling: pretrained.pooled[pooling]}, {})]
    print(f"\n4. Isotropy after fine-tuning ({pooling} embedding, the same dev sentences)")
    for source in sources:
        models.append(
            embed(
                source,
                examples,
                max_length=cfg.max_length,
                batch_size=cfg.batch_size,
                device=device,
            )
        )
    cfg = replace(cfg, models=cfg.models + specs)
    payload = write_analysis(cfg, task, split, models)
    columns = [column for m in payload["models"] for column in m["reports"].values()]
    table = dict(zip(payload["columns"], columns))
    print_table(table)
    print(collapse_note(table))
    analysis = Path(cfg.out).resolve()
    print(
        "\nThe IsoBN paper's picture, pre-trained vs fine-tuned without and with IsoBN:\n"
        f"  per-dimension std:        {analysis / 'std_histogram.png'}\n"
        f"  correlation heatmaps:     {analysis / 'correlation.png'}\n"
        f"  spectrum, numbers, notes: {analysis / 'spectrum.png'}, isotropy.json, report.md"
    )
