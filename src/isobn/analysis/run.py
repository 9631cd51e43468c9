"""The analysis recipe: examples -> embeddings per model -> statistics -> JSON, figures, report."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

from isobn import isotropy
from isobn.analysis.config import AnalysisConfig
from isobn.analysis.prose import render_report
from isobn.analysis.sources import (
    LAYER_POOLINGS,
    ModelEmbeddings,
    default_pooling,
    embed,
    parse_sources,
)
from isobn.errors import UserError
from isobn.isotropy_stats import EmbeddingStats
from isobn.training.safe_files import all_or_none, write_atomically, write_json_atomically

logger = logging.getLogger(__name__)

NORM_TITLES = {
    "isobn": "IsoBN",
    "batchnorm": "BatchNorm",
    "layernorm": "LayerNorm",
}
JSON_FILE = "isotropy.json"
REPORT_FILE = "report.md"


def load_examples(cfg: AnalysisConfig):
    """(task, examples of cfg.split after the deterministic subsample, split name)."""
    from isobn.training.train import load_run_task

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


def analysis_device(cpu: bool) -> str:
    """ "cuda" when a GPU is present and ``cpu`` is not set, else "cpu"."""
    if cpu:
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def analyze(cfg: AnalysisConfig) -> dict:
    """Run the analysis described in isobn.analysis; returns the isotropy.json payload."""
    from isobn.training.checkpoint import check_writable_directory

    cfg.validate()
    check_writable_directory(Path(cfg.out))  # created by write_analysis, once inputs are good
    sources = parse_sources(cfg.models)
    task, examples, split = load_examples(cfg)
    logger.info("analysing %d %s examples of %s", len(examples), split, task.name)
    device = analysis_device(cfg.cpu)
    pooling = default_pooling(sources)
    models: list[ModelEmbeddings] = []
    layer_reports: dict[str, list[dict[str, float]]] = {}
    for source in sources:
        m = embed(
            source,
            examples,
            pooling=cfg.pooling,
            default_pooling=pooling,
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
    return write_analysis(cfg, task.name, split, models, layer_reports)


def write_analysis(
    cfg: AnalysisConfig,
    task: str,
    split: str,
    models: list[ModelEmbeddings],
    layer_reports: dict[str, list[dict[str, float]]] | None = None,
) -> dict:
    """Statistics of every embedding of ``models`` (each (N, H), the same N examples), then
    isotropy.json, the figures and report.md in ``cfg.out``; returns the isotropy.json payload.

    ``layer_reports``: series ("pooling" or "label pooling") -> isotropy.report per layer.
    """
    import isobn.analysis.figures as figures
    from isobn.training.checkpoint import ensure_writable_directory

    out = Path(cfg.out)
    ensure_writable_directory(out)
    layer_reports = layer_reports or {}
    names = embedding_names(models)
    warn_if_rank_limited(models)
    stats = [EmbeddingStats.from_embeddings(name, m.pooled[key]) for m, key, name in names]
    payload = _payload(cfg, task, split, models, names, stats, layer_reports)
    with all_or_none():  # a full disk leaves the earlier analysis in `out` whole
        drawn = figures.can_draw()
        written = figures.analysis_figures(stats, layer_reports, out) if drawn else {}
        write_json_atomically(out / JSON_FILE, payload)
        write_atomically(
            out / REPORT_FILE,
            render_report(payload, stats, layer_reports, {k: p.name for k, p in written.items()}),
        )
    logger.info("wrote %s, %s and %d figures to %s", JSON_FILE, REPORT_FILE, len(written), out)
    return payload


def warn_if_rank_limited(models: list[ModelEmbeddings]) -> None:
    """Warn when N examples <= D dimensions: the (D, D) covariance then has rank <= N - 1, so
    IsoScore, effective rank and the spectrum describe the sample as much as the model."""
    for m in models:
        n, d = next(iter(m.pooled.values())).shape
        if n <= d:
            logger.warning(
                "%s: %d examples for %d dimensions: the covariance has rank at most %d, so "
                "IsoScore, effective rank and the spectrum are bounded by the sample; use "
                "--max-examples above %d (and a split that large) for statistics of the model",
                m.source.label,
                n,
                d,
                n - 1,
                d,
            )


def _payload(cfg, task, split, models, names, stats, layer_reports) -> dict:
    """isotropy.json: what was measured, a report per embedding (and per layer), the columns."""
    sources = [m.source for m in models]
    payload = {
        "task": task,
        "split": split,
        "n_examples": len(next(iter(models[0].pooled.values()))),
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
            **_transform_entry(m),
            "reports": {},
        }
        for (owner, key, _), s in zip(names, stats):
            if owner is m:
                entry["reports"][_report_key(m, key)] = s.report
        if cfg.layers == "all":
            prefix = "" if len(sources) == 1 else f"{m.source.label} "
            entry["layers"] = {p: layer_reports[prefix + p] for p in LAYER_POOLINGS}
        payload["models"].append(entry)
    payload["columns"] = [s.name for s in stats]
    return payload


def _report_key(m: ModelEmbeddings, key: str) -> str:
    """The key in isotropy.json's "reports" of the embedding ``m.pooled[key]``."""
    return f"{m.norm_pooling} (after {m.norm})" if key == "normed" else key


def _transform_entry(m: ModelEmbeddings) -> dict:
    """isotropy.json's account of a checkpoint's method: "method" (canonical spec), "transform"
    (its norm part, or "identity"), and the "reports" keys "before" it and "after" it (the
    classifier input: the same key for the identity); None where they do not apply."""
    pair = m.before_after()
    before, after = (None, None) if pair is None else (_report_key(m, k) for k in pair)
    return {"method": m.method, "transform": m.transform, "before": before, "after": after}


def _after_title(m: ModelEmbeddings) -> str:
    """IsoBN, BatchNorm, ... for a norm with its default parameters, else its canonical spec."""
    transform = m.transform or m.norm
    if ":" in transform:
        return transform
    return NORM_TITLES.get(m.norm, m.norm)


def embedding_names(models: list[ModelEmbeddings]) -> list[tuple[ModelEmbeddings, str, str]]:
    """(model, key in model.pooled, display name) for every embedding, in column order.

    Names: ``label`` with one model only its pooling; ``pooling`` appended when a model has
    several; ``(before norm)`` / ``(after IsoBN)`` on the two embeddings of a norm (its
    canonical spec, e.g. ``(after isobn:beta=0.25)``, when it has parameters of its own). A
    method without a norm has one embedding: its classifier input is its pooled embedding.
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
                rows.append((m, p, f"{base} (before norm)"))
                rows.append((m, "normed", f"{base} (after {_after_title(m)})"))
            else:
                rows.append((m, p, base))
    return rows
