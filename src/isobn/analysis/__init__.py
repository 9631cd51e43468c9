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
                         a table of the metrics (one column per embedding) and, for
                         checkpoints, the isotropy before -> after each method's transform

A model is a pre-trained encoder (``minilm``, a model directory, a hub name) or an ``isobn
train`` checkpoint (a run directory or its ``best/``). Optional labels: ``label=path``.
For a checkpoint with a norm layer the embedding is measured before and after the norm
(the norm in eval mode, i.e. with its running statistics, as at inference). A checkpoint's
entry in isotropy.json names its "method" (canonical spec), its "transform" (the method's norm
part, or "identity" for a method without a norm: none, correg, istar) and the "reports" keys
"before" and "after" it (the classifier input; one key for the identity, measured once).

Which embeddings (``pooling``):
    cls / pooler / mean   that pooling for every model
    all                   the three (pooler skipped, with a warning, when a model has none)
    None (default)        a checkpoint's own pooling; for an encoder, the pooling of the first
                          checkpoint being compared, else ``pooler`` (``cls`` without a pooler)

The default split is ``train``: the paper measures the isotropy of the training-set
embeddings, the ones fine-tuning sees. ``max_examples`` rows are drawn without replacement
with ``numpy.random.default_rng(seed)`` and kept in their original order, so every model
and every run sees the same texts.

Modules: ``config`` (AnalysisConfig), ``sources`` (models and their embeddings, through
isobn.training.embeddings), ``run`` (the recipe and isotropy.json), ``prose`` (report.md); the
statistics are isobn.isotropy_stats.EmbeddingStats and the figures isobn.analysis.figures.
"""

from isobn.analysis.config import AnalysisConfig
from isobn.analysis.prose import metrics_table, read_layers, render_report
from isobn.analysis.run import analyze, embedding_names, load_examples, write_analysis
from isobn.analysis.sources import (
    ModelEmbeddings,
    ModelSource,
    embed,
    parse_model_spec,
    parse_sources,
)

__all__ = [
    "AnalysisConfig",
    "ModelEmbeddings",
    "ModelSource",
    "analyze",
    "embed",
    "embedding_names",
    "load_examples",
    "metrics_table",
    "parse_model_spec",
    "parse_sources",
    "read_layers",
    "render_report",
    "write_analysis",
]
