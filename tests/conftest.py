"""Shared fixtures: a tiny randomly initialised BERT saved like a pre-trained one, and small
labelled files with a learnable signal. Nothing is downloaded."""

from __future__ import annotations

import csv
import json
import os
import random
import string
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CHARS = string.ascii_lowercase + string.digits + ".,!?'-"
# whole words of the fixtures are single tokens, so a tiny model learns them in a few steps
POSITIVE = ["good", "great", "fine", "nice", "superb"]
NEGATIVE = ["bad", "awful", "poor", "dull", "weak"]
FILLER = ["the", "movie", "plot", "cast", "story", "was", "very", "quite", "a", "film"]


def write_tiny_bert(directory: Path, hidden: int = 32, seed: int = 0) -> Path:
    """A 2-layer BERT with a character-level WordPiece vocabulary, saved with its tokenizer."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = POSITIVE + NEGATIVE + FILLER + ["word", "is", "it"]
    vocab += words + list(CHARS) + ["##" + c for c in CHARS]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=256,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    return str(write_tiny_bert(tmp_path_factory.mktemp("tiny-bert")))


def sentiment_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = rng.sample(FILLER, 4) + [rng.choice(POSITIVE if label else NEGATIVE)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": "pos" if label else "neg"})
    return rows


def pair_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        same = i % 2
        first = rng.choice(POSITIVE + NEGATIVE)
        second = first if same else rng.choice([w for w in POSITIVE + NEGATIVE if w != first])
        rows.append(
            {"premise": f"the word is {first}", "hypothesis": f"it is {second}", "label": same}
        )
    return rows


def regression_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        k = rng.randint(0, 5)
        words = rng.sample(FILLER, 5 - k) + [rng.choice(POSITIVE) for _ in range(k)]
        rows.append({"text": " ".join(words), "score": float(k)})
    return rows


def write_csv(path: Path, rows: list[dict]) -> str:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def write_splits(directory: Path, fmt: str, rows, **sizes: int) -> dict[str, str]:
    """split -> `directory/<split>.<fmt>` (csv or jsonl) holding rows(n, seed), for each
    split=n given; seeds 0, 1, 2, ... in the order given."""
    write = {"csv": write_csv, "jsonl": write_jsonl}[fmt]
    return {
        split: write(directory / f"{split}.{fmt}", rows(n, seed))
        for seed, (split, n) in enumerate(sizes.items())
    }


@pytest.fixture(scope="session")
def sentiment_files(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("sentiment")
    return write_splits(d, "csv", sentiment_rows, train=96, dev=32, test=32)


@pytest.fixture(scope="session")
def pair_files(tmp_path_factory) -> dict[str, str]:
    return write_splits(tmp_path_factory.mktemp("pairs"), "jsonl", pair_rows, train=64, dev=32)


# `isobn train` on the pair files in 1 epoch of 2 steps: the quick settings of the tests that
# train each architecture of tests/tiny_encoders.py
ARCH_QUICK = [
    "--epochs", "1", "--batch-size", "16", "--max-length", "24", "--lr", "1e-3",
    "--max-train", "32", "--max-eval", "16", "--isotropy-examples", "16",
]  # fmt: skip


def pair_args(files: dict[str, str]) -> list[str]:
    """The data arguments of `isobn train` and `isobn analyze` for the pair files."""
    return [
        "--train", files["train"], "--dev", files["dev"],
        "--text-column", "premise", "--text-pair-column", "hypothesis",
    ]  # fmt: skip


@pytest.fixture(scope="session")
def encoder_dirs(tmp_path_factory):
    """arch -> a directory with the bare encoder (AutoModel) of tests/tiny_encoders.py and its
    tokenizer, saved like a pre-trained model; built once per session."""
    from tiny_encoders import write_encoder

    cache: dict[str, str] = {}

    def get(arch: str) -> str:
        if arch not in cache:
            cache[arch] = str(write_encoder(arch, tmp_path_factory.mktemp(arch)))
        return cache[arch]

    return get


@pytest.fixture(scope="session")
def arch_run(tmp_path_factory, encoder_dirs, pair_files):
    """(arch, pooling) -> a finished run of `isobn train --method isobn` (ARCH_QUICK) on the
    pair files; trained once per session, so tests read it and never change it."""
    from isobn.cli.main import main

    cache: dict[tuple[str, str], Path] = {}

    def get(arch: str, pooling: str) -> Path:
        if (arch, pooling) not in cache:
            out = tmp_path_factory.mktemp(f"{arch}-{pooling}") / "run"
            args = ["train", "--model", encoder_dirs(arch), *pair_args(pair_files)]
            args += ["--pooling", pooling, "--method", "isobn", "--out", str(out), *ARCH_QUICK]
            assert main(args) == 0
            cache[arch, pooling] = out
        return cache[arch, pooling]

    return get


@pytest.fixture(scope="session")
def regression_files(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("regression")
    return write_splits(d, "csv", regression_rows, train=64, dev=32)


def _write_tsv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(header)] + ["\t".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def glue_dir(tmp_path_factory) -> str:
    """SST-2, RTE, STS-B and MNLI in the original GLUE TSV layout, with learnable labels."""
    root = tmp_path_factory.mktemp("glue")
    for split, n, seed in (("train", 48, 0), ("dev", 16, 1)):
        rows = sentiment_rows(n, seed)
        _write_tsv(
            root / "SST-2" / f"{split}.tsv",
            ["sentence", "label"],
            [[r["text"], int(r["label"] == "pos")] for r in rows],
        )
        pairs = pair_rows(n, seed)
        _write_tsv(
            root / "RTE" / f"{split}.tsv",
            ["index", "sentence1", "sentence2", "label"],
            [
                [i, p["premise"], p["hypothesis"], "entailment" if p["label"] else "not_entailment"]
                for i, p in enumerate(pairs)
            ],
        )
        scores = regression_rows(n, seed)
        _write_tsv(
            root / "STS-B" / f"{split}.tsv",
            ["index", "genre", "sentence1", "sentence2", "score"],
            [[i, "main", r["text"], "a film", r["score"]] for i, r in enumerate(scores)],
        )
    mnli_header = ["index", "promptID", "pairID", "genre", "sentence1", "sentence2", "gold_label"]
    labels = ["entailment", "neutral", "contradiction"]
    for name, n, seed in (("train", 48, 0), ("dev_matched", 12, 1), ("dev_mismatched", 12, 2)):
        pairs = pair_rows(n, seed)
        _write_tsv(
            root / "MNLI" / f"{name}.tsv",
            mnli_header,
            [
                [i, i, f"{i}n", "fiction", p["premise"], p["hypothesis"], labels[i % 3]]
                for i, p in enumerate(pairs)
            ],
        )
    return str(root)


# The quick training options of the command-line tests (1 epoch, batches of 16, 24 tokens,
# lr 1e-3, every step logged); quick_config below is the TrainConfig of the library tests.
QUICK_ARGS = [
    "--epochs", "1", "--batch-size", "16", "--max-length", "24", "--lr", "1e-3",
    "--log-every-steps", "1",
]  # fmt: skip


def quick_config(out, model: str, files: dict[str, str], **overrides):
    """The quick training settings of the tests: a tiny model, its files, 2 epochs of 6 steps
    (96 rows, batches of 16), lr 1e-3, [CLS] pooling, every step logged."""
    from isobn.training.config import TrainConfig

    values = dict(
        out=str(out),
        model=model,
        pooling="cls",
        train_file=files["train"],
        dev_file=files["dev"],
        test_file=files.get("test"),
        epochs=2,
        batch_size=16,
        learning_rate=1e-3,
        max_length=32,
        log_every_steps=1,
        seed=3,
    )
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_bert, sentiment_files) -> Path:
    """A finished isobn run of quick_config (1 epoch, evaluations at steps 3 and 6, a test
    split): metrics.json, config.json, log.jsonl, best/ and last/ (--keep-last: the tests
    resume copies of it). Trained once per session; tests read it, or copy it before changing
    anything."""
    from isobn.training.train import train

    out = tmp_path_factory.mktemp("trained") / "run"
    train(
        quick_config(out, tiny_bert, sentiment_files, epochs=1, eval_every_steps=3, keep_last=True)
    )
    return out


@pytest.fixture(scope="session")
def pooler_run(tmp_path_factory, tiny_bert, sentiment_files) -> Path:
    """A finished `isobn train` run with --pooling pooler and IsoBN (labels neg, pos): what
    `isobn export` exports (a run with [CLS] pooling cannot be)."""
    from isobn.training.train import train

    out = tmp_path_factory.mktemp("export-run") / "run"
    train(quick_config(out, tiny_bert, sentiment_files, pooling="pooler", epochs=1))
    return out


# data-file helpers of the task and predict tests
def write(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


def jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)
