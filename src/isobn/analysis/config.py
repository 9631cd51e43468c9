"""The settings of one isotropy analysis (``isobn analyze``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from isobn.errors import UserError

POOLING_CHOICES = ("cls", "pooler", "mean", "last", "all")
LAYER_CHOICES = ("last", "all")


@dataclass
class AnalysisConfig:
    """Everything one analysis depends on; saved (as given) in isotropy.json."""

    out: str
    models: list[str] = field(default_factory=lambda: ["minilm"])  # specs, `label=path` allowed
    task: str = "mr"
    data_dir: str | None = None
    train_file: str | None = None  # generic files instead of a named task
    dev_file: str | None = None
    test_file: str | None = None
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    regression: bool = False
    max_train: int | None = None  # applied by the task loader, before max_examples
    max_eval: int | None = None
    split: str = "train"  # the paper analyses the training-set embeddings
    pooling: str | None = None  # None: the checkpoint's own pooling (see isobn.analysis)
    layers: str = "last"
    max_examples: int | None = 2000  # enough for stable D x D statistics at D <= 1024
    max_length: int = 128  # train's default
    batch_size: int = 64
    seed: int = 0  # of the subsample only
    trust_remote_code: bool = False
    cpu: bool = False

    def validate(self) -> None:
        """One-line UserErrors for impossible settings, before any model is loaded."""
        if not self.models:
            raise UserError("no model to analyse: pass --model or --compare")
        if self.pooling is not None and self.pooling not in POOLING_CHOICES:
            raise UserError(
                f"unknown pooling {self.pooling!r}: choose one of {', '.join(POOLING_CHOICES)}"
            )
        if self.layers not in LAYER_CHOICES:
            raise UserError(f"--layers must be last or all, got {self.layers!r}")
        for name in ("max_length", "batch_size"):
            if getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise UserError(f"{flag} must be a positive integer, got {getattr(self, name)}")
        if self.max_examples is not None and self.max_examples < 2:
            raise UserError(f"--max-examples must be at least 2, got {self.max_examples}")
        if (self.train_file or self.dev_file) and not (self.train_file and self.dev_file):
            raise UserError("generic files need both --train FILE and --dev FILE")
