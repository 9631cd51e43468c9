"""report.md of an isotropy analysis: the metrics table, each checkpoint's isotropy before and
after its method's transform, and a two-sentence reading of every figure, generated from the
numbers of each embedding."""

from __future__ import annotations

import numpy as np

from isobn.isotropy_stats import TRANSFORM_METRICS, EmbeddingStats, before_after

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


def transform_section(models: list[dict]) -> list[str]:
    """report.md lines: a row per checkpoint of isotropy.json's "models" whose trained pooling
    was measured, its method and the statistics before -> after the method's transform (one
    value for the identity); [] when there is no such checkpoint."""
    rows = [m for m in models if m.get("before")]
    if not rows:
        return []
    titles = dict(TABLE_METRICS)
    lines = [
        "## Before and after each method's transform",
        "",
        "| model | method | transform | " + " | ".join(titles[k] for k in TRANSFORM_METRICS) + " |",
        "|---|---|---|" + "---:|" * len(TRANSFORM_METRICS),
    ]
    for m in rows:
        identity = m["transform"] == "identity"
        after = None if identity else m["reports"][m["after"]]
        cells = before_after(m["reports"][m["before"]], after, arrow="→")
        method = f"`{m['method']}`" if m.get("method") else "-"
        transform = "identity (after = before)" if identity else f"`{m['transform']}`"
        values = " | ".join(cells.get(k, "-") for k in TRANSFORM_METRICS)
        lines.append(f"| {m['label']} | {method} | {transform} | {values} |")
    lines += [
        "",
        "Before: the pooled embedding the checkpoint was trained on; after: the classifier "
        "input, the output of the method's norm in eval mode (running statistics, as at "
        "inference).",
    ]
    if any(m["transform"] == "identity" for m in rows):
        lines[-1] += (
            " A method without a norm (`none`; regularisers such as `correg`, `istar`) applies "
            "the identity: its regularisers change the embedding only through training, so "
            "before and after are one embedding, measured once."
        )
    return lines + [""]


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


def _model_line(m: dict) -> str:
    """report.md's bullet for one entry of isotropy.json's "models"."""
    what = "isobn checkpoint" if m["kind"] == "checkpoint" else "pre-trained encoder"
    norm = f", norm {m['norm']} on {m['norm_pooling']} pooling" if m["norm"] else ""
    if m.get("method"):
        norm = f", method `{m['method']}`{norm}"
    if m.get("transform") == "identity":
        norm += ", no norm: the classifier input is the pooled embedding"
    poolings = ", ".join(k for k in m["reports"] if "(after" not in k)
    return f"- **{m['label']}**: {what} `{m['model']}` (pooling {poolings}{norm})"


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
    lines += [_model_line(m) for m in models]
    lines += [
        "",
        "Moments are population moments over the examples; a dimension is dead when its std is "
        "at most 1e-8 times the largest. See `isotropy.json` for every number.",
        "",
        "## Metrics",
        "",
        metrics_table(stats),
        "",
        *transform_section(models),
    ]
    sections = [
        ("std", "Per-dimension standard deviation", read_std),
        ("correlation", "Correlation between dimensions", read_correlation),
        ("spectrum", "Covariance eigenvalue spectrum", read_spectrum),
    ]
    rescaled = [m["label"] for m in models if m["norm"] == "isobn"]
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
