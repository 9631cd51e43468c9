"""Write a tiny random BERT (with its tokenizer) and small labelled CSV files into a folder,
for CI's run of isobn from the installed wheel (no downloads)."""

import csv
import random
import sys
from pathlib import Path

from transformers import BertConfig, BertModel, BertTokenizer

folder = Path(sys.argv[1])
words = ["good", "great", "bad", "awful", "the", "movie", "plot", "was", "very"]
vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)})
config = BertConfig(
    vocab_size=len(vocab),
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
)
BertModel(config).save_pretrained(folder / "tiny-bert")
tokenizer.save_pretrained(folder / "tiny-bert")

rng = random.Random(0)
for split, n in (("train", 48), ("dev", 16)):
    with open(folder / f"{split}.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(n):
            label = ["neg", "pos"][i % 2]
            mood = rng.choice(["good", "great"] if label == "pos" else ["bad", "awful"])
            writer.writerow([f"the movie {mood} was very {mood}", label])
