"""Reports: the Markdown summary, JSON output and the report figures (PNG, through
report.charts)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from entropy_sentinel.evaluate.metrics import auroc, reliability_curve
from entropy_sentinel.features.compute import FEATURE_NAMES
from entropy_sentinel.report.charts import pyplot, save


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    return f"{float(value):.{digits}f}"


def estimator_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown table of the held-out study: one row per estimator."""
    lines = [
        "| estimator | median MAE | coverage | median width | worth N labels | beats ATC[max] "
        "| slope | Spearman | difference error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['estimator']} | {_fmt(r['mae_median'])} | {_fmt(r['coverage'], 2)} "
            f"| {_fmt(r['width_median'], 2)} | {_fmt(int(r['worth_n_labels']))} "
            f"| {_fmt(r['beats_atc_max'], 2)} | {_fmt(r.get('slope'), 2)} "
            f"| {_fmt(r.get('spearman'), 2)} | {_fmt(r.get('diff_error_median'))} |"
        )
    return lines


def model_section(model: str, per_slice: pd.DataFrame, metrics: dict[str, Any]) -> str:
    """Markdown section of one model: per-slice table, held-out study and headline metrics."""
    lines = [f"## {model}", ""]
    train = ", ".join(metrics.get("train_slices", []))
    est = metrics.get("estimator", {})
    interval = metrics.get("interval", {})
    lines += [
        f"Classifier: {est.get('classifier')}, calibrate={est.get('calibrate')}, "
        f"balance={est.get('balance')}, features={est.get('features')}, slice estimate "
        f"{metrics.get('deployed', 'ES')}; trained on: {train} "
        f"({metrics.get('n_train', 'n/a')} rows). Feature spec: {metrics.get('feature_spec')}.",
        "",
        f"Interval: {interval.get('covers', 'n/a')}.",
        "",
        "| slice | in training | n | true acc | estimate | interval | abs error "
        "| Selected | ATC[max] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in per_slice.sort_values("true_accuracy", ascending=False).to_dict("records"):
        lines.append(
            f"| {r['slice']} | {_fmt(bool(r['in_training']))} | {int(r['n'])} "
            f"| {_fmt(r['true_accuracy'])} | {_fmt(r['estimated_accuracy'])} "
            f"| [{_fmt(r['interval_low'], 2)}, {_fmt(r['interval_high'], 2)}] "
            f"| {_fmt(r['abs_error'])} | {_fmt(r.get('estimate:Selected'))} "
            f"| {_fmt(r.get('estimate:ATC[max]'))} |"
        )
    study = metrics.get("study", {})
    lines += [
        "",
        f"- Nested choices (leave-one-unit-out inside the training slices): "
        f"{metrics.get('selected', {})}",
        f"- Spearman ρ over slices: {_fmt(metrics.get('spearman'))}; per-response AUROC "
        f"(pooled): {_fmt(metrics.get('auroc_pooled'))}; Brier {_fmt(metrics.get('brier'))}; "
        f"ECE {_fmt(metrics.get('ece'))}",
        f"- Dropped rows: {metrics.get('n_dropped_ungraded', 0)} ungraded, "
        f"{metrics.get('n_dropped_empty', 0)} empty responses",
        "",
    ]
    if study.get("estimators"):
        lines += [
            f"### Held-out study: {study['n_compositions']} training compositions of up to "
            f"{study['max_train_slices']} slices, each estimator scored on the other slices",
            "",
            "Coverage is the measured share of held-out slices whose true accuracy lies in the "
            f"estimator's {_fmt(interval.get('level'), 2)} interval; worth N labels is the "
            "number of random labels per slice with the same mean absolute error; beats "
            "ATC[max] is the share of compositions with a lower MAE than ATC on max-entropy.",
            "",
            *estimator_table(study["estimators"]),
            "",
        ]
    return "\n".join(lines)


def summary_markdown(results: dict[str, tuple[pd.DataFrame, dict[str, Any]]]) -> str:
    """The results/summary.md text for {model: (per_slice, metrics)}."""
    lines = [
        "# Entropy Sentinel summary",
        "",
        "Accuracy estimated without labels from decoding entropy (arXiv 2601.09001). "
        "Training slices are scored on their held-out test split, the others on all rows.",
        "",
        "| model | estimate | MAE | Selected MAE | ATC[max] MAE | Spearman ρ | AUROC |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, (_, m) in results.items():
        by = m.get("estimators", {})
        lines.append(
            f"| {model} | {m.get('deployed', 'ES')} | {_fmt(m.get('mae'))} "
            f"| {_fmt(by.get('Selected', {}).get('mae'))} "
            f"| {_fmt(m.get('atc_max_mae'))} | {_fmt(m.get('spearman'))} "
            f"| {_fmt(m.get('auroc_pooled'))} |"
        )
    lines.append("")
    for model, (per_slice, m) in results.items():
        lines.append(model_section(model, per_slice, m))
    return "\n".join(lines)


# ---------------------------------------------------------------- figures


def _grid(n: int, size: float = 3.6):
    plt = pyplot()
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def plot_estimates(per_slice: dict[str, pd.DataFrame], path: str | Path) -> None:
    """Estimated vs true accuracy per slice, one panel per model, with shift-aware intervals."""
    fig, axes = _grid(max(len(per_slice), 1))
    for ax, (model, df) in zip(axes, per_slice.items(), strict=False):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        for in_train, marker in ((True, "s"), (False, "o")):
            d = df[df["in_training"].astype(bool) == in_train]
            err = np.vstack(
                [
                    d["estimated_accuracy"] - d["interval_low"],
                    d["interval_high"] - d["estimated_accuracy"],
                ]
            ).clip(min=0)
            ax.errorbar(
                d["true_accuracy"],
                d["estimated_accuracy"],
                yerr=err,
                fmt=marker,
                label="training slice (test split)" if in_train else "unseen slice",
                capsize=2,
            )
            if "estimate:ATC[max]" in d:
                ax.scatter(d["true_accuracy"], d["estimate:ATC[max]"], marker="x", color="k")
            for r in d.itertuples():
                ax.annotate(str(r.slice), (r.true_accuracy, r.estimated_accuracy), fontsize=6)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="true accuracy", ylabel="estimated", title=model)
    axes[0].legend(fontsize=7, title="x = ATC[max]", title_fontsize=7)
    fig.tight_layout()
    save(fig, path)


def plot_es_vs_atc(metrics: dict[str, dict[str, Any]], path: str | Path) -> None:
    """MAE of every estimator and baseline per model, on the configured training slices."""
    plt = pyplot()
    methods = list(dict.fromkeys(n for m in metrics.values() for n in m.get("estimators", {})))
    values = np.array(
        [
            [m.get("estimators", {}).get(n, {}).get("mae", np.nan) for n in methods]
            for m in metrics.values()
        ],
        dtype=float,
    ).reshape(len(metrics), len(methods))
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(metrics) + 3), 3.6))
    width = 0.8 / max(len(methods), 1)
    x = np.arange(len(metrics))
    for j, name in enumerate(methods):
        ax.bar(x + j * width, values[:, j], width, label=name)
    ax.set_xticks(x + 0.4 - width / 2, list(metrics))
    ax.set_ylabel("MAE over slices")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    save(fig, path, bbox_inches="tight")


def feature_auroc_table(features: pd.DataFrame, slice_by: str) -> pd.DataFrame:
    """Univariate AUROC of each feature for detecting failures, per slice (rows) x feature.

    Higher feature = more likely wrong; values below 0.5 mean the feature points the other way.
    """
    df = features.dropna(subset=["correct", *FEATURE_NAMES])
    wrong = ~df["correct"].astype(bool)
    table = {
        s: {f: auroc(wrong[g.index], g[f]) for f in FEATURE_NAMES}
        for s, g in df.groupby(df[slice_by].astype(str))
    }
    return pd.DataFrame(table).T.loc[:, list(FEATURE_NAMES)]


def plot_feature_auroc(tables: dict[str, pd.DataFrame], path: str | Path) -> None:
    """Heat map of per-feature failure AUROC, one panel per model."""
    plt = pyplot()
    n = max(len(tables), 1)
    fig, axes = plt.subplots(n, 1, figsize=(9, 1.2 + 0.35 * sum(len(t) for t in tables.values())))
    axes = np.atleast_1d(axes)
    im = None
    for ax, (model, t) in zip(axes, tables.items(), strict=False):
        im = ax.imshow(t.to_numpy(dtype=float), vmin=0, vmax=1, cmap="RdBu_r", aspect="auto")
        ax.set_yticks(range(len(t)), t.index, fontsize=7)
        last = model == list(tables)[-1]
        ax.set_xticks(range(t.shape[1]), t.columns if last else [], rotation=60, fontsize=7)
        ax.set_title(model, fontsize=9)
        for (i, j), v in np.ndenumerate(t.to_numpy(dtype=float)):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=5)
    if im is not None:
        fig.colorbar(im, ax=list(axes), label="AUROC (failure)")
    save(fig, path, bbox_inches="tight")


def plot_reliability(predictions: dict[str, pd.DataFrame], path: str | Path) -> None:
    """Reliability diagrams of p(correct) on the evaluation rows, one panel per model."""
    fig, axes = _grid(max(len(predictions), 1))
    for ax, (model, df) in zip(axes, predictions.items(), strict=False):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        for label, d in (("in-domain", df[df["in_training"]]), ("unseen", df[~df["in_training"]])):
            if len(d):
                c = reliability_curve(d["correct"], d["p_correct"])
                ax.plot(c["confidence"], c["accuracy"], marker="o", label=label)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted p(correct)", ylabel="observed")
        ax.set_title(model)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save(fig, path)


def plot_mae_vs_k(mae_vs_k: pd.DataFrame, path: str | Path) -> None:
    """Median MAE (IQR band) against the number of training slices, one line per model."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for model, d in mae_vs_k.groupby("llm"):
        d = d.sort_values("k")
        ax.plot(d["k"], d["mae_median"], marker="o", label=model)
        ax.fill_between(d["k"], d["mae_q25"], d["mae_q75"], alpha=0.2)
    ax.set(xlabel="number of training slices k", ylabel="MAE over slices (median, IQR)")
    ax.set_xticks(sorted(mae_vs_k["k"].unique()))
    ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, path)


def resource_usage_markdown(root: str | Path = "timings") -> str:
    """Markdown: wall time and peak memory per rule, from the jobs' ``benchmark:`` files.

    Snakemake writes one TSV per job, ``root/<rule>.tsv`` or ``root/<rule>/...``, with seconds
    in ``s`` and peak resident memory (MB) in ``max_rss``; jobs not yet run are not counted.
    """
    rows = []
    for path in sorted(Path(root).glob("**/*.tsv")):
        table = pd.read_csv(path, sep="\t")
        if table.empty or "s" not in table.columns:
            continue
        rule = path.relative_to(root).parts[0].removesuffix(".tsv")
        rss = pd.to_numeric(table.get("max_rss"), errors="coerce")
        rows.append({"rule": rule, "s": float(table["s"].iloc[-1]), "rss": rss.iloc[-1]})
    if not rows:
        return ""
    usage = pd.DataFrame(rows).groupby("rule", sort=True)
    lines = [
        "## Where the time and memory went",
        "",
        "| rule | jobs | total time (s) | slowest job (s) | peak memory (MB) |",
        "|---|---|---|---|---|",
    ]
    for rule, jobs in usage:
        lines.append(
            f"| {rule} | {len(jobs)} | {_fmt(jobs['s'].sum(), 1)} | {_fmt(jobs['s'].max(), 1)} "
            f"| {_fmt(jobs['rss'].max(), 0)} |"
        )
    return "\n".join(lines) + "\n"
