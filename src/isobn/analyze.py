"""Isotropy analysis of sentence embeddings: embed a split, measure, draw, write a report.

``analyze(AnalysisConfig(...))`` embeds the texts of one split of a task with one or several
models and writes into ``out``:

    isotropy.json        isobn.isotropy.report() of every embedding (and of every layer with
                         layers="all"), plus task, split, number of examples and the models
    std_histogram.png    per-dimension standard deviation (the IsoBN paper's first figure)
    correlation.png      correlation among the 64 highest-variance dims; histogram of |rho|
    spectrum.png         covariance eigenvalue spectrum and cumulative variance share
    layers.png           isotropy by layer (layers="all" only)
    report.md            the figures, each with a short reading generated from the numbers,
                         and a table of the metrics (one column per embedding)

A model is a pre-trained encoder (``minilm``, a model directory, a hub name) or an ``isobn
train`` checkpoint (a run directory or its ``best/``). Optional labels: ``label=path``.
For a checkpoint with a norm layer the embedding is measured before and after the norm
(the norm in eval mode, i.e. with its running statistics, as at inference).

Which embeddings (``pooling``):
    cls / pooler / mean   that pooling for every model
    all                   the three (pooler skipped, with a warning, when a model has none)
    None (default)        a checkpoint's own pooling; for an encoder, the pooling of the first
                          checkpoint being compared, else ``pooler`` (``cls`` without a pooler)

The default split is ``train``: the paper measures the isotropy of the training-set
embeddings, the ones fine-tuning sees. ``max_examples`` rows are drawn without replacement
with ``numpy.random.default_rng(seed)`` and kept in their original order, so every model
and every run sees the same texts.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from isobn import isotropy
from isobn.checkpoint import ensure_writable_directory
from isobn.errors import UserError

__all__ = [
    "AnalysisConfig",
    "EmbeddingStats",
    "ModelSource",
    "ModelEmbeddings",
    "analyze",
    "embed",
    "load_examples",
    "parse_model_spec",
]

logger = logging.getLogger(__name__)

POOLING_CHOICES = ("cls", "pooler", "mean", "all")
LAYER_CHOICES = ("last", "all")
LAYER_POOLINGS = ("cls", "mean")  # per-layer embeddings; the HF pooler exists only on top
TOP_DIMS = 64  # correlation heatmap: the highest-variance dimensions
NORM_TITLES = {
    "isobn": "IsoBN",
    "isobn-legacy": "IsoBN legacy",
    "batchnorm": "BatchNorm",
    "layernorm": "LayerNorm",
}
JSON_FILE = "isotropy.json"
REPORT_FILE = "report.md"


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
    pooling: str | None = None  # None: the checkpoint's own pooling (see module notes)
    layers: str = "last"
    max_examples: int | None = 2000  # enough for stable D x D statistics at D <= 1024
    max_length: int = 128  # train's default
    batch_size: int = 64
    seed: int = 0  # of the subsample only
    trust_remote_code: bool = False
    cpu: bool = False

    def validate(self) -> None:
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


# --------------------------------------------------------------------------------------------
# Models


@dataclass(frozen=True)
class ModelSource:
    """One model to analyse: a pre-trained encoder or an `isobn train` checkpoint."""

    label: str  # column label in tables and legends
    spec: str  # what the user passed
    path: str  # encoder name/directory, or the checkpoint directory (the one with the weights)
    checkpoint: bool


def parse_model_spec(spec: str) -> ModelSource:
    """``[label=]path``: a run directory, its best/ directory, or an encoder name/directory.

    Without a label: the directory name (the run's name for a best/ directory) or the name.
    """
    from isobn.checkpoint import resolve_directory
    from isobn.model import MODEL_CONFIG_FILE, resolve_model_path

    label, path = None, spec
    if "=" in spec and not os.path.exists(spec):
        label, path = spec.split("=", 1)
        label = label.strip()
        if not label or not path:
            raise UserError(f"bad model {spec!r}: write label=path, e.g. isobn=runs/mr-isobn")
    directory = Path(path)
    if directory.is_dir() and not (directory / MODEL_CONFIG_FILE).is_file():
        best = resolve_directory(directory / "best")
        if best is not None and (best / MODEL_CONFIG_FILE).is_file():
            directory = best
    if (directory / MODEL_CONFIG_FILE).is_file():
        if label is None:
            named = directory.parent if directory.name in ("best", "best.old") else directory
            label = named.resolve().name
        return ModelSource(label, spec, str(directory), checkpoint=True)
    if directory.is_dir() and (directory / "last").is_dir():
        raise UserError(
            f"{path} is an unfinished `isobn train` run without a best/ checkpoint: "
            "let it evaluate once, or pass another model"
        )
    resolve_model_path(path)  # one-line UserError for a directory that is not a model
    if label is None:
        label = Path(path).name if os.path.isdir(path) else path
    return ModelSource(label, spec, path, checkpoint=False)


@dataclass
class ModelEmbeddings:
    """Embeddings of one model: pooled (N, H) matrices and, with layers="all", per layer."""

    source: ModelSource
    pooled: dict[str, np.ndarray]  # "cls" / "pooler" / "mean", and "normed" for a norm
    layers: dict[str, list[np.ndarray]]  # "cls" / "mean" -> L + 1 matrices (N, H); 0: embeddings
    norm: str | None = None  # the checkpoint's norm, None when it has none
    norm_pooling: str | None = None  # the pooling the norm was trained on


def _has_pooler(encoder) -> bool:
    return getattr(encoder, "pooler", None) is not None


def resolve_poolings(
    source: ModelSource, requested: str | None, trained: str | None, default: str, has_pooler: bool
) -> list[str]:
    """The poolings measured for one model (see the module notes)."""
    if requested == "all":
        wanted = ["cls", "pooler", "mean"]
    elif requested is not None:
        wanted = [requested]
    else:
        wanted = [trained or default]
    if not has_pooler and "pooler" in wanted:
        if requested == "pooler" or (requested is None and trained == "pooler"):
            raise UserError(f"{source.label} has no pooler: use --pooling cls or --pooling mean")
        if requested == "all":
            logger.warning("%s has no pooler: measuring cls and mean only", source.label)
            wanted.remove("pooler")
        else:
            wanted = ["cls"]
    if trained is not None and trained not in wanted:
        logger.warning(
            "%s was trained on %s pooling: its norm is not applied to %s",
            source.label,
            trained,
            "/".join(wanted),
        )
    return wanted


def embed(
    source: ModelSource,
    examples: Sequence,
    *,
    pooling: str | None = None,
    default_pooling: str = "pooler",
    layers: str = "last",
    max_length: int = 128,
    batch_size: int = 64,
    device: str = "cpu",
    trust_remote_code: bool = False,
    regression: bool = False,
) -> ModelEmbeddings:
    """Embed ``examples`` (isobn.tasks.Example) with one model, in length-sorted batches.

    Returns float32 matrices in the order of ``examples``. A checkpoint's norm is applied to
    its own pooling (key ``"normed"``), in eval mode.
    """
    import torch
    from tqdm.auto import tqdm

    from isobn.data import collate, encode, sorted_batches
    from isobn.model import (
        load_checkpoint,
        load_encoder,
        load_tokenizer,
        pool_hidden,
        pool_output,
    )

    norm_module, norm, trained = None, None, None
    if source.checkpoint:
        model, tokenizer = load_checkpoint(source.path, trust_remote_code)
        encoder = model.encoder
        trained = model.config.pooling
        if model.config.norm != "none":
            norm, norm_module = model.config.norm, model.norm
    else:
        encoder = load_encoder(source.path, trust_remote_code)
        tokenizer = load_tokenizer(source.path, trust_remote_code)
    poolings = resolve_poolings(source, pooling, trained, default_pooling, _has_pooler(encoder))
    encoder.eval().to(device)
    if norm_module is not None:
        norm_module.eval().to(device)
    with_layers = layers == "all"

    split = encode(examples, tokenizer, max_length, regression)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    n = len(split)
    hidden_size = getattr(encoder.config, "hidden_size", None) or encoder.config.dim  # distilbert
    pooled = {p: np.zeros((n, hidden_size), np.float32) for p in poolings}
    if norm is not None and trained in poolings:
        pooled["normed"] = np.zeros((n, hidden_size), np.float32)
    layer_rows: dict[str, np.ndarray] = {}  # "pooling/layer" -> (N, H)
    batches = sorted_batches(split.lengths, batch_size)
    with torch.inference_mode():
        for indices in tqdm(batches, desc=f"embedding ({source.label})", leave=False):
            batch = collate(split, indices, pad_id)
            batch.pop("labels")
            batch = {k: v.to(device) for k, v in batch.items()}
            out = encoder(**batch, output_hidden_states=with_layers)
            for p in poolings:
                vectors = pool_output(out, batch["attention_mask"], p)  # (B, H)
                pooled[p][indices] = vectors.float().cpu().numpy()
                if p == trained and "normed" in pooled:
                    pooled["normed"][indices] = norm_module(vectors).float().cpu().numpy()
            if with_layers:
                for i, hidden in enumerate(out.hidden_states):  # L + 1 of (B, T, H)
                    for p in LAYER_POOLINGS:
                        key = f"{p}/{i}"
                        if key not in layer_rows:
                            layer_rows[key] = np.zeros((n, hidden_size), np.float32)
                        vectors = pool_hidden(hidden, batch["attention_mask"], p)
                        layer_rows[key][indices] = vectors.float().cpu().numpy()
    by_layer: dict[str, list[np.ndarray]] = {}
    if with_layers:
        count = len(layer_rows) // len(LAYER_POOLINGS)
        by_layer = {p: [layer_rows[f"{p}/{i}"] for i in range(count)] for p in LAYER_POOLINGS}
    return ModelEmbeddings(source, pooled, by_layer, norm, trained if norm else None)


# --------------------------------------------------------------------------------------------
# Statistics of one embedding


@dataclass
class EmbeddingStats:
    """What the figures and the report need from one (N, D) embedding.

    All moments are population moments (see isobn.isotropy); correlations are among the
    non-dead dimensions. ``top_dims`` are the ``TOP_DIMS`` highest-std dimensions in
    decreasing std, and ``top_corr`` their correlation matrix.
    """

    name: str  # column / legend label
    report: dict[str, float]
    std: np.ndarray  # (D,)
    eigvals: np.ndarray  # (D,) covariance eigenvalues, descending
    top_dims: np.ndarray  # (k,) indices
    top_corr: np.ndarray  # (k, k)
    abs_corr: np.ndarray  # (A (A - 1) / 2,) off-diagonal |rho| of the A alive dims

    @classmethod
    def from_embeddings(cls, name: str, X: np.ndarray, top: int = TOP_DIMS) -> EmbeddingStats:
        cov = isotropy.covariance(X)  # (D, D)
        std = isotropy.per_dim_std(cov)
        alive = ~isotropy.dead_dims_mask(std)
        corr = isotropy.correlation_from_cov(cov, alive)  # (A, A)
        abs_corr = np.abs(corr[np.triu_indices(corr.shape[0], k=1)])
        order = np.argsort(-std, kind="stable")
        top_dims = order[alive[order]][:top]
        top_corr = isotropy.correlation_from_cov(cov[np.ix_(top_dims, top_dims)])
        return cls(
            name=name,
            report=isotropy.report(X),
            std=std,
            eigvals=isotropy.covariance_eigvals(cov),
            top_dims=top_dims,
            top_corr=top_corr,
            abs_corr=abs_corr,
        )

    @property
    def dead(self) -> int:
        return int(self.report["dead_dims"])

    def dims_for_half_variance(self) -> int:
        """Fewest dimensions whose variances (std^2) sum to half the total variance."""
        var = np.sort(self.std**2)[::-1]
        total = float(var.sum())
        if total <= 0.0:
            return 0
        return int(np.searchsorted(np.cumsum(var) / total, 0.5) + 1)

    def components_for_share(self, share: float) -> int:
        """Fewest principal components whose variance share reaches ``share``."""
        total = float(self.eigvals.sum())
        if total <= 0.0:
            return 0
        cumulative = np.cumsum(self.eigvals) / total
        return int(min(np.searchsorted(cumulative, share - 1e-12) + 1, len(cumulative)))


def embedding_names(models: list[ModelEmbeddings]) -> list[tuple[ModelEmbeddings, str, str]]:
    """(model, key in model.pooled, display name) for every embedding, in column order.

    Names: ``label`` with one model only its pooling; ``pooling`` appended when a model has
    several; ``(before norm)`` / ``(after IsoBN)`` on the two embeddings of a norm.
    """
    several_models = len(models) > 1
    rows = []
    for m in models:
        poolings = [k for k in m.pooled if k != "normed"]
        for p in poolings:
            parts = []
            if several_models:
                parts.append(m.source.label)
            if len(poolings) > 1 or not several_models:
                parts.append(p)
            base = " ".join(parts)
            if m.norm is not None and p == m.norm_pooling and "normed" in m.pooled:
                title = NORM_TITLES.get(m.norm, m.norm)
                rows.append((m, p, f"{base} (before norm)"))
                rows.append((m, "normed", f"{base} (after {title})"))
            else:
                rows.append((m, p, base))
    return rows


# --------------------------------------------------------------------------------------------
# Data


def load_examples(cfg: AnalysisConfig):
    """(task, examples of cfg.split after the deterministic subsample, split name)."""
    from isobn.train import load_run_task

    task = load_run_task(cfg)  # the same task and generic-file options as `isobn train`
    name = cfg.split
    if name == "dev" and name not in task.splits:
        name = task.dev_splits[0]  # mnli: dev_matched
    if name == "test" and name not in task.splits:
        tests = [s for s in task.splits if s.startswith("test")]
        name = tests[0] if tests else name
    if name not in task.splits:
        raise UserError(
            f"task {task.name} has no {cfg.split} split with labels: "
            f"choose one of {', '.join(task.splits)}"
        )
    examples = task.splits[name]
    if len(examples) < 2:
        raise UserError(f"the {name} split has {len(examples)} rows: isotropy needs at least 2")
    if cfg.max_examples is not None and cfg.max_examples < len(examples):
        rng = np.random.default_rng(cfg.seed)
        keep = np.sort(rng.choice(len(examples), size=cfg.max_examples, replace=False))
        examples = [examples[i] for i in keep]
    return task, examples, name


# --------------------------------------------------------------------------------------------
# Orchestration


def _default_pooling(sources: list[ModelSource]) -> str:
    """The pooling of the first checkpoint compared, else the HF pooler."""
    from isobn.model import MODEL_CONFIG_FILE

    for source in sources:
        if source.checkpoint:
            config = json.loads((Path(source.path) / MODEL_CONFIG_FILE).read_text())
            return config.get("pooling", "pooler")
    return "pooler"


def analyze(cfg: AnalysisConfig) -> dict:
    """Run the analysis described in the module notes; returns the isotropy.json payload."""
    from isobn import figures

    cfg.validate()
    out = Path(cfg.out)
    ensure_writable_directory(out)
    sources = [parse_model_spec(spec) for spec in cfg.models]
    labels = [s.label for s in sources]
    duplicated = sorted({x for x in labels if labels.count(x) > 1})
    if duplicated:
        raise UserError(
            f"two models are labelled {duplicated[0]!r}: name them, e.g. --compare a=PATH b=PATH"
        )
    task, examples, split = load_examples(cfg)
    logger.info("analysing %d %s examples of %s", len(examples), split, task.name)
    device = "cpu"
    if not cfg.cpu:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"

    default_pooling = _default_pooling(sources)
    models = []
    layer_reports: dict[str, list[dict[str, float]]] = {}
    for source in sources:
        m = embed(
            source,
            examples,
            pooling=cfg.pooling,
            default_pooling=default_pooling,
            layers=cfg.layers,
            max_length=cfg.max_length,
            batch_size=cfg.batch_size,
            device=device,
            trust_remote_code=cfg.trust_remote_code,
            regression=task.regression,
        )
        for p, matrices in m.layers.items():
            series = p if len(sources) == 1 else f"{source.label} {p}"
            layer_reports[series] = [isotropy.report(x) for x in matrices]
        m.layers = {}  # reported; free the memory
        models.append(m)

    names = embedding_names(models)
    stats = [EmbeddingStats.from_embeddings(name, m.pooled[key]) for m, key, name in names]
    payload = {
        "task": task.name,
        "split": split,
        "n_examples": len(examples),
        "model": sources[0].spec if len(sources) == 1 else [s.spec for s in sources],
        "models": [],
        "config": asdict(cfg),
    }
    for m in models:
        entry = {
            "label": m.source.label,
            "model": m.source.path,
            "kind": "checkpoint" if m.source.checkpoint else "encoder",
            "norm": m.norm,
            "norm_pooling": m.norm_pooling,
            "reports": {},
        }
        for (owner, key, _), s in zip(names, stats):
            if owner is m:
                report_key = f"{m.norm_pooling} (after {m.norm})" if key == "normed" else key
                entry["reports"][report_key] = s.report
        if cfg.layers == "all":
            prefix = "" if len(sources) == 1 else f"{m.source.label} "
            entry["layers"] = {p: layer_reports[prefix + p] for p in LAYER_POOLINGS}
        payload["models"].append(entry)
    payload["columns"] = [s.name for s in stats]

    written = figures.analysis_figures(stats, layer_reports, out)
    (out / JSON_FILE).write_text(json.dumps(payload, indent=2))
    (out / REPORT_FILE).write_text(
        render_report(payload, stats, layer_reports, {k: p.name for k, p in written.items()})
    )
    logger.info("wrote %s, %s and %d figures to %s", JSON_FILE, REPORT_FILE, len(written), out)
    return payload


# --------------------------------------------------------------------------------------------
# report.md

TABLE_METRICS = (
    ("isoscore", "IsoScore (1 = isotropic)"),
    ("std_mean", "mean per-dim std"),
    ("std_cv", "CV of per-dim std"),
    ("dead_dims", "dead dims"),
    ("mean_abs_corr", "mean abs(ρ)"),
    ("frac_abs_corr_gt_0_5", "share of abs(ρ) > 0.5"),
    ("avg_cosine", "average cosine"),
    ("partition_isotropy", "partition isotropy I(W)"),
    ("effective_rank", "effective rank"),
    ("top1_pc_share", "top-1 PC variance share"),
    ("top10_pc_share", "top-10 PC variance share"),
)


def _fmt(value: float) -> str:
    """A number for a table cell or a sentence: 3 decimals, or scientific when tiny/huge."""
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4):
        return f"{value:.2e}"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def _cell(key: str, value: float) -> str:
    if key == "dead_dims":
        return str(int(value))
    if key == "effective_rank":
        return f"{value:.1f}"
    return _fmt(value)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def metrics_table(stats: list[EmbeddingStats]) -> str:
    """Markdown table: one row per metric, one column per embedding."""
    head = "| metric | " + " | ".join(s.name for s in stats) + " |"
    rule = "|---|" + "---:|" * len(stats)
    rows = [
        f"| {title} | " + " | ".join(_cell(key, s.report[key]) for s in stats) + " |"
        for key, title in TABLE_METRICS
    ]
    return "\n".join([head, rule, *rows])


# Each reading is two sentences, generated from the numbers of one embedding.


def read_std(s: EmbeddingStats) -> tuple[str, str]:
    d = len(s.std)
    alive = np.sort(s.std)[s.dead :]  # dead dims have the smallest std
    if alive.size == 0:
        return (f"All {d} dims are constant (dead).", "There is no variance to share.")
    spread = (
        f"ranges from {_fmt(float(alive[0]))} to {_fmt(float(alive[-1]))} "
        f"(over all {d} dims: mean {_fmt(s.report['std_mean'])}, CV {s.report['std_cv']:.2f})"
    )
    if s.dead:
        first = f"{s.dead} of {d} dims are dead (std ~ 0); the std of the others {spread}."
    else:
        first = f"Std {spread}; no dim is dead."
    return (
        first,
        f"{s.dims_for_half_variance()} of {d} dims carry half of the total variance "
        f"(an isotropic embedding needs {(d + 1) // 2}).",
    )


def read_correlation(s: EmbeddingStats) -> tuple[str, str]:
    k = len(s.top_dims)
    top = s.top_corr[np.triu_indices(k, k=1)] if k > 1 else np.zeros(0)
    top_mean = float(np.abs(top).mean()) if top.size else 0.0
    return (
        f"Among the {k} highest-variance dims the mean |ρ| is {top_mean:.2f}; "
        f"over all dims it is {s.report['mean_abs_corr']:.2f} (0 = uncorrelated).",
        f"{_pct(s.report['frac_abs_corr_gt_0_5'])} of the dimension pairs have |ρ| > 0.5.",
    )


def read_spectrum(s: EmbeddingStats) -> tuple[str, str]:
    d = len(s.eigvals)
    return (
        f"The top principal component carries {_pct(s.report['top1_pc_share'])} of the "
        f"variance, the top 10 carry {_pct(s.report['top10_pc_share'])}.",
        f"{s.components_for_share(0.5)} of {d} components reach 50% and "
        f"{s.components_for_share(0.9)} reach 90%; effective rank "
        f"{s.report['effective_rank']:.1f}, IsoScore {s.report['isoscore']:.3f}.",
    )


def read_layers(reports: list[dict[str, float]]) -> tuple[str, str]:
    """IsoScore and average cosine across layers; layers where every dim is constant (e.g. the
    [CLS] input embedding, the same vector for every text) are named and left out of the
    lowest/highest."""
    last = len(reports) - 1
    constant = [i for i, r in enumerate(reports) if r["dead_dims"] == r["d"]]
    varied = [i for i in range(len(reports)) if i not in constant] or list(range(len(reports)))
    iso = [reports[i]["isoscore"] for i in varied]
    cos = [reports[i]["avg_cosine"] for i in varied]
    low, high = varied[int(np.argmin(iso))], varied[int(np.argmax(cos))]
    first = (
        f"IsoScore goes from {reports[0]['isoscore']:.3f} (embedding layer) to "
        f"{reports[-1]['isoscore']:.3f} (layer {last}), lowest {min(iso):.3f} at layer {low}"
    )
    if constant:
        names = ", ".join(str(i) for i in constant)
        first += f"; at layer {names} the vector is the same for every text (no variance)"
    return (
        first + ".",
        f"The average cosine goes from {reports[0]['avg_cosine']:.2f} to "
        f"{reports[-1]['avg_cosine']:.2f}, highest {max(cos):.2f} at layer {high}.",
    )


def _reading(name: str | None, lines: tuple[str, str]) -> list[str]:
    """Two markdown lines (hard line break between them), as a bullet when named."""
    first, second = lines
    if name is None:
        return [f"{first}  ", second]
    return [f"- **{name}**: {first}  ", f"  {second}"]


def _readings(stats: list[EmbeddingStats], read) -> list[str]:
    if len(stats) == 1:
        return _reading(None, read(stats[0]))
    return [line for s in stats for line in _reading(s.name, read(s))]


def render_report(
    payload: dict,
    stats: list[EmbeddingStats],
    layer_reports: dict[str, list[dict[str, float]]],
    figure_files: dict[str, str],
) -> str:
    """report.md: what was measured, the metrics table, each figure with its reading."""
    cfg = payload["config"]
    models = payload["models"]
    lines = ["# Isotropy analysis", ""]
    lines.append(
        f"{payload['n_examples']} {payload['split']} examples of task `{payload['task']}` "
        f"(max length {cfg['max_length']} tokens, subsample seed {cfg['seed']})."
    )
    lines.append("")
    for m in models:
        what = "isobn checkpoint" if m["kind"] == "checkpoint" else "pre-trained encoder"
        norm = f", norm {m['norm']} on {m['norm_pooling']} pooling" if m["norm"] else ""
        poolings = ", ".join(k for k in m["reports"] if "(after" not in k)
        lines.append(f"- **{m['label']}**: {what} `{m['model']}` (pooling {poolings}{norm})")
    lines += [
        "",
        "Moments are population moments over the examples; a dimension is dead when its std is "
        "at most 1e-8 times the largest. See `isotropy.json` for every number.",
        "",
        "## Metrics",
        "",
        metrics_table(stats),
        "",
    ]
    sections = [
        ("std", "Per-dimension standard deviation", read_std),
        ("correlation", "Correlation between dimensions", read_correlation),
        ("spectrum", "Covariance eigenvalue spectrum", read_spectrum),
    ]
    rescaled = [m["label"] for m in models if m["norm"] in ("isobn", "isobn-legacy")]
    for key, title, read in sections:
        if key not in figure_files:
            continue
        lines += [f"## {title}", "", f"![{title}]({figure_files[key]})", ""]
        lines += _readings(stats, read) + [""]
        if key == "correlation" and rescaled:
            lines += [
                f"IsoBN ({', '.join(rescaled)}) scales each dimension by its own factor, which "
                "leaves every correlation unchanged: before and after it the |ρ| distributions "
                "coincide, and the heatmaps differ only in which dims have the highest variance.",
                "",
            ]
    if "layers" in figure_files:
        title = "Isotropy by layer"
        lines += [f"## {title}", "", f"![{title}]({figure_files['layers']})", ""]
        for series, reports in layer_reports.items():
            lines += _reading(series, read_layers(reports))
        lines.append("")
    return "\n".join(lines)
