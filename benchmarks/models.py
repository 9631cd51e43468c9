"""The benchmarked models and steps: model directories, isobn's classifier and its training
step (isobn.training.train.training_step itself), AdamW as isobn builds it, random batches, the mr
data as files, and FLOP counts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

SEQ_LEN = 64  # the length of the fixed-shape encoder steps (issue: "length 64")
# AdamW as before commit 8a9a662 (fused=False), an arm of the training and fast-path benchmarks;
# today's choice is isobn.training.optim.adamw's (fused where the torch version and device allow)
PREVIOUS_ADAMW = {"fused": False}
RANDOM_BERT = "bert-base-random"  # BertConfig() defaults, random weights: GPU speed runs
TINY_BERT = "tiny-random"  # 2 layers, hidden 128, random weights: --quick smoke runs
MODELS = ("minilm", RANDOM_BERT, TINY_BERT)


def prepare_model_dir(model: str, tmp: Path, data: str = "package") -> str:
    """The packaged MiniLM, or a randomly initialised BERT written (weights + tokenizer) under
    `tmp`, so that every code path (isobn train, Trainer, predict) loads a directory the same
    way. The tokenizer of a random BERT is MiniLM's (the same uncased 30522-word vocabulary),
    or with `data` "sample" one trained on the committed mr sample (sample_data.py: no
    asset package needed)."""
    if model == "minilm":
        from isobn.training.pretrained import packaged_minilm_path

        return packaged_minilm_path()
    from transformers import AutoModel, BertConfig

    if model == RANDOM_BERT:
        config = BertConfig()  # BERT-base: hidden 768, 12 layers, 12 heads
    elif model == TINY_BERT:
        config = BertConfig(
            hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512
        )
    else:
        raise ValueError(f"unknown model {model!r}: one of {', '.join(MODELS)}")
    path = tmp / f"{model}-{data}"
    if not (path / "config.json").is_file():
        torch.manual_seed(0)
        AutoModel.from_config(config).save_pretrained(path)
        if data == "sample":
            import sample_data

            sample_data.sample_tokenizer().save_pretrained(path)
        else:
            from isobn.training.pretrained import load_tokenizer

            load_tokenizer("minilm").save_pretrained(path)
    return str(path)


def classifier(settings, norm: str, seed: int = 0):
    """isobn's SequenceClassifier (pooler -> method -> dropout -> linear), on the device,
    training; `norm` is a method spec."""
    from isobn.training.model import ModelConfig, build_model

    torch.manual_seed(seed)
    config = ModelConfig(encoder=settings.model_dir(), num_labels=2, method=norm)
    return build_model(config).to(settings.device).train()


def optimizer_like_train(model, **adamw_options):
    """AdamW exactly as isobn.training.train builds it (isobn.training.optim.adamw: decay on
    matrices only,
    fused where supported) unless `adamw_options` override the implementation (fused=...,
    foreach=...)."""
    from isobn.training.optim import adamw, parameter_groups

    if not adamw_options:
        return adamw(model, 2e-5, 0.01)
    return torch.optim.AdamW(parameter_groups(model, 0.01), lr=2e-5, **adamw_options)


def random_batch(settings, batch: int, length: int, seed: int = 0) -> dict:
    """Token ids without padding (B, T), mask of ones, binary labels (B,)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 29000, (batch, length), generator=generator)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    labels = torch.randint(0, 2, (batch,), generator=generator)
    device = settings.device
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "labels": labels.to(device),
    }


def train_step(model, optimizer, batch: dict, precision: str = "fp32") -> None:
    """One step of isobn's loop without accelerate (isobn.training.train.training_step): forward
    under
    the precision's autocast, cross-entropy, backward, clipping at 1.0, AdamW step, zero_grad."""
    from isobn.training.optim import Optimisation, Precision
    from isobn.training.train import training_step

    device_type = batch["input_ids"].device.type
    opt = Optimisation(optimizer, precision=Precision(precision, device_type), max_grad_norm=1.0)
    training_step(model, batch, opt)


def step_arms(settings, batch_sizes) -> tuple[dict, int]:
    """The reference step of the layer and method benchmarks: {B: arm} timing one training
    step (train_step, warmed up) of the classifier with norm none at batch B, length SEQ_LEN,
    all real tokens; and the encoder's width."""
    import timing

    model = classifier(settings, norm="none")
    optimizer = optimizer_like_train(model)
    arms = {}
    for b in batch_sizes:
        batch = random_batch(settings, b, SEQ_LEN)
        arms[b] = timing.warmed_arm(
            lambda batch=batch: train_step(model, optimizer, batch), settings.device
        )
    return arms, encoder_shape(model)[1]


def step_note(settings) -> str:
    """What step_arms time, for the line under a table."""
    return (
        f"step = {settings.model} classifier with norm none, length {SEQ_LEN}, "
        "forward+backward+clip+AdamW"
    )


def width_cell(dim: int, hidden: int) -> str:
    """Table cell: is a module of width `dim` timed against a step of its own width?"""
    return "yes" if dim == hidden else f"no ({hidden}-wide step)"


def non_embedding_parameters(model) -> int:
    """N of the FLOP estimate: every parameter but the embedding tables (lookups, no matmul)."""
    return sum(p.numel() for name, p in model.named_parameters() if "embeddings." not in name)


def encoder_shape(model) -> tuple[int, int]:
    """(layers, hidden) of the encoder inside an isobn or HF classifier."""
    config = model.encoder.config if hasattr(model, "encoder") else model.config
    return config.num_hidden_layers, config.hidden_size


def train_flops_per_token(n_params: int, layers: int, hidden: int, seq: int) -> float:
    """PaLM (Chowdhery et al. 2022, appendix B) training FLOPs per token: 6 N + 12 L H T.

    6 N: forward (2 N) and backward (4 N) multiply-adds of the non-embedding weights;
    12 L H T: attention scores and weighted values (QK^T and AV), forward and backward,
    per layer, for a sequence of T positions. Padding positions count as computed tokens.
    """
    return 6.0 * n_params + 12.0 * layers * hidden * seq


def forward_flops_per_token(n_params: int, layers: int, hidden: int, seq: int) -> float:
    """The forward third of the PaLM estimate: 2 N + 4 L H T."""
    return train_flops_per_token(n_params, layers, hidden, seq) / 3.0


def batch_flops(lengths_per_batch: list[tuple[int, int]], per_token: Callable[[int], float]):
    """Total FLOPs of batches given as (rows, padded length) pairs."""
    return sum(rows * width * per_token(width) for rows, width in lengths_per_batch)


def model_dims(settings) -> tuple[int, int, int]:
    """(N non-embedding parameters of the 2-class classifier, layers, hidden), from the config
    alone (meta device: no weights)."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(settings.model_dir())
    with torch.device("meta"):
        encoder = AutoModel.from_config(config)
    head = config.hidden_size * 2 + 2  # the linear classifier, 2 classes
    return non_embedding_parameters(encoder) + head, config.num_hidden_layers, config.hidden_size


def load_mr(max_train: int | None, max_eval: int | None, data: str = "package"):
    """isobn.tasks.load_task("mr", ...) (parsing the package takes ~5 s: load once per run),
    or with `data` "sample" the committed sample (sample_data.py; at most 2,000 / 200)."""
    if data == "sample":
        import sample_data

        return sample_data.load_sample(max_train, max_eval)
    from isobn.tasks import load_task

    return load_task("mr", max_train=max_train, max_eval=max_eval, seed=0)


def task_files(task, directory: Path) -> dict[str, str]:
    """The splits of `task` as CSV files (text, label) under `directory`, for `isobn train`
    with --train/--dev/--test: the same examples, loaded in milliseconds."""
    import csv

    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, examples in task.splits.items():
        path = directory / f"{split}.csv"
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows([e.text, task.label_names[e.label]] for e in examples)
        files[split] = str(path)
    return files
