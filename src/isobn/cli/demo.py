"""`isobn demo`: the main job on the embedded default (MiniLM on movie reviews).

1. isotropy of the pre-trained pooled embedding ([CLS] and pooler) of dev sentences;
2. fine-tune with `--norm none` and `--norm isobn`, same seed, on a stratified subset of `mr`
   (defaults: 2,000 training sentences, 500 dev and 500 test, 3 epochs, max length 64);
3. the comparison table; everything under --out (printed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

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


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="pre-trained isotropy, then none vs isobn on movie reviews (MiniLM)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-train", type=int, default=DEMO_SETTINGS["max_train"])
    parser.add_argument("--epochs", type=int, default=DEMO_SETTINGS["epochs"])
    parser.set_defaults(run=run)


def pretrained_isotropy(model_name: str, texts: list[str], max_length: int) -> dict[str, dict]:
    """isotropy.report of the pre-trained [CLS] and pooler embeddings of `texts`."""
    import torch
    from tqdm.auto import tqdm

    from isobn import isotropy
    from isobn.data import collate, encode, sorted_batches
    from isobn.model import load_encoder, load_tokenizer
    from isobn.tasks import Example

    tokenizer = load_tokenizer(model_name)
    encoder = load_encoder(model_name).eval()
    split = encode([Example(t, None, 0) for t in texts], tokenizer, max_length, False)
    hidden = encoder.config.hidden_size
    embeddings = {"cls": torch.zeros(len(split), hidden), "pooler": torch.zeros(len(split), hidden)}
    with torch.inference_mode():
        for indices in tqdm(sorted_batches(split.lengths, 64), desc="embedding", leave=False):
            batch = collate(split, indices, tokenizer.pad_token_id or 0)
            batch.pop("labels")
            out = encoder(**batch)
            rows = torch.as_tensor(indices)
            embeddings["cls"][rows] = out.last_hidden_state[:, 0]
            embeddings["pooler"][rows] = out.pooler_output
    return {pooling: isotropy.report(x) for pooling, x in embeddings.items()}


def run(args: argparse.Namespace) -> int:
    import json
    import time

    from isobn.experiment import run_experiment
    from isobn.report import markdown
    from isobn.tasks import load_task
    from isobn.train import TrainConfig

    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {**DEMO_SETTINGS, "max_train": args.max_train, "epochs": args.epochs}
    print(f"isobn demo: MiniLM on movie reviews (mr); output in {out.resolve()}")

    task = load_task("mr", max_eval=1000, seed=0)
    texts = [e.text for e in task.splits["dev"]]
    print(f"\n1. Isotropy of the pre-trained embedding over {len(texts)} dev sentences")
    reports = pretrained_isotropy(settings["model"], texts, settings["max_length"])
    (out / "pretrained_isotropy.json").write_text(json.dumps(reports, indent=2))
    keys = [
        "std_mean",
        "std_cv",
        "dead_dims",
        "mean_abs_corr",
        "isoscore",
        "effective_rank",
        "top1_pc_share",
        "avg_cosine",
    ]
    print("| embedding | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for pooling, report in reports.items():
        print(f"| {pooling} | " + " | ".join(f"{report[k]:.3g}" for k in keys) + " |")

    print(
        f"\n2. Fine-tuning none vs isobn, seed {args.seed}: {settings['max_train']} training "
        f"sentences, {settings['max_eval']} dev, {settings['max_eval']} test, "
        f"{settings['epochs']} epochs"
    )
    base = TrainConfig(out=str(out / "runs"), seed=args.seed, **settings)
    results = run_experiment(base, ["mr"], ["none", "isobn"], [args.seed])

    print("\n3. Comparison (accuracy x 100)\n")
    print(markdown(results))
    if results.get("test"):
        print(markdown(results["test"]))
    elapsed = time.perf_counter() - started
    print(f"demo finished in {elapsed / 60:.1f} min; everything is in {out.resolve()}")
    return 0
