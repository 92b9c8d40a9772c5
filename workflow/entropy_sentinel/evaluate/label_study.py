"""What a few labels per slice buy: PPI++ against the labels alone and the label-free interval.

The estimator is trained as deployed (``fit_deployed``: the ES classifier with its shift-aware
interval) on one regime's labelled rows, and scores another regime's responses (``transfer``)
or each held-out slice of its own (``loso``). Then, for each slice and each number n of labels,
``repeats`` seeded draws of n responses of the slice play the labelled ones (the rest are
unlabelled); the truth is the slice's accuracy over all its graded responses. Per draw: the
PPI++ interval (``estimate.labels``, predictor ``row_estimate`` or ``p_correct``) and the
labels' own Wilson and Clopper-Pearson intervals; coverage (truth inside) and width. The
label-free interval is the estimator's own, one per slice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from entropy_sentinel.estimate.classifier import EntropySentinel
from entropy_sentinel.estimate.labels import labels_only_interval, ppi_mean_interval
from entropy_sentinel.evaluate.protocol import (
    DEPLOYED,
    clean_features,
    fit_deployed,
    slice_labels,
)

SIZES = (5, 10, 20, 30, 50)  # 30: the traffic's slices hold 40
PREDICTORS = ("row_estimate", "p_correct")
INTERVALS = ("normal", "wilson")
VARIANTS = tuple(f"ppi++ {i} [{p}]" for p in PREDICTORS for i in INTERVALS)
SPARE = 5  # n labels are drawn only from slices with n + SPARE responses: some stay unlabelled


def _scored(estimator, rows: pd.DataFrame, slices: pd.Series) -> tuple[pd.DataFrame, list]:
    """Per response: slice, correct, p_correct, row_estimate; per slice: the label-free
    estimate with its interval and the truth."""
    scored = pd.DataFrame(
        {
            "slice": slices.to_numpy(),
            "correct": rows["correct"].to_numpy(dtype=float),
            "p_correct": estimator.p_correct(rows),
            "row_estimate": estimator.row_estimates(rows),
        }
    )
    free = []
    for name, group in scored.groupby("slice", sort=True):
        e = estimator.estimate_from_rows(group["row_estimate"])
        truth = float(group["correct"].mean())
        free.append({"slice": name, "n": len(group), "true": truth, "point": e.point,
                     "low": e.low, "high": e.high})  # fmt: skip
    return scored, free


def transfer_scores(
    source: pd.DataFrame,
    target: pd.DataFrame,
    design: dict,
    only: list[str] | None = None,
    n_jobs: int = 2,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Trained on every graded row of ``source``, scoring ``target``'s (slices ``only``)."""
    source, _ = clean_features(source)
    target, _ = clean_features(target)
    if only:
        source = source[slice_labels(source, design["slice_by"]).isin(only)]
        target = target[slice_labels(target, design["slice_by"]).isin(only)]
    _, estimator = fit_deployed(source, design["slice_by"], design, n_jobs=n_jobs)
    target = target.reset_index(drop=True)
    scored, free = _scored(estimator, target, slice_labels(target, design["slice_by"]))
    return scored, pd.DataFrame(free)


def loso_scores(
    features: pd.DataFrame,
    design: dict,
    only: list[str] | None = None,
    n_jobs: int = 2,
    label_free: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each slice (of ``only``) scored by an estimator trained on all the other slices (of
    every slice, ``only`` or not).

    ``label_free``: a leave-one-slice-out table of `study holdout` (its long CSV) for the
    same design; then each fold fits the ES classifier alone (its p and row estimates) and the
    label-free interval per slice is the table's, which saves refitting every fold's panel."""
    rows, _ = clean_features(features)
    slices = slice_labels(rows, design["slice_by"])
    deployed = DEPLOYED[design["slice_estimate"]]
    scored, free = [], []
    for held in sorted(set(only or slices.unique())):
        out = (slices == held).to_numpy()
        if label_free is None:
            _, estimator = fit_deployed(rows[~out], design["slice_by"], design, n_jobs=n_jobs)
        else:
            estimator = EntropySentinel.from_config(design)
            estimator.fit(rows[~out], rows.loc[~out, "correct"].to_numpy(dtype=int))
        s, f = _scored(estimator, rows[out].reset_index(drop=True), slices[out])
        if label_free is not None:
            row = label_free[(label_free["slice"] == held) & (label_free["estimator"] == deployed)]
            if len(row) != 1:
                raise ValueError(f"the label-free table has no single {deployed} row for {held}")
            f = [{**f[0], **row.iloc[0][["point", "low", "high"]].astype(float).to_dict()}]
        scored.append(s)
        free += f
    return pd.concat(scored, ignore_index=True), pd.DataFrame(free)


def label_draws(
    scored: pd.DataFrame,
    sizes=SIZES,
    repeats: int = 500,
    seed: int = 0,
    alpha: float = 0.1,
    predictors=PREDICTORS,
    intervals=INTERVALS,
) -> pd.DataFrame:
    """Per slice, n labels and interval method: coverage and mean width over ``repeats``
    draws of n labelled responses (the same draws for every method), and PPI++'s mean lam."""
    rng = np.random.default_rng(seed)
    rows = []
    for name, group in scored.groupby("slice", sort=True):
        y = group["correct"].to_numpy(dtype=float)
        truth, m = float(y.mean()), len(y)
        for n in sizes:
            if n + SPARE > m:
                continue
            variants = [(i, p) for p in predictors for i in intervals]
            found = {f"ppi++ {i} [{p}]": [] for i, p in variants} | {"wilson": [], "cp": []}
            for _ in range(repeats):
                mask = np.zeros(m, dtype=bool)
                mask[rng.choice(m, n, replace=False)] = True
                for i, p in variants:
                    f = group[p].to_numpy(dtype=float)
                    found[f"ppi++ {i} [{p}]"].append(
                        ppi_mean_interval(y[mask], f[mask], f[~mask], alpha, interval=i)
                    )
                found["wilson"].append(labels_only_interval(y[mask], alpha, "wilson"))
                found["cp"].append(labels_only_interval(y[mask], alpha, "clopper-pearson"))
            for method, drawn in found.items():
                low = np.array([i.low for i in drawn])
                high = np.array([i.high for i in drawn])
                rows.append(
                    {
                        "slice": name,
                        "slice_n": m,
                        "true": truth,
                        "n_labels": n,
                        "method": method,
                        "coverage": float(np.mean((low <= truth) & (truth <= high))),
                        "width": float(np.mean(high - low)),
                        "lam": float(np.mean([i.lam for i in drawn])),
                    }
                )
    return pd.DataFrame(rows)


def summarise(long: pd.DataFrame, free: pd.DataFrame, variant: str) -> pd.DataFrame:
    """Per n labels: PPI++ (``variant``, e.g. "ppi++ wilson [row_estimate]") coverage, min
    slice coverage, width and lam; the Wilson and Clopper-Pearson coverage and width;
    PPI++/Wilson width; the label-free interval's coverage and width over the same slices."""
    rows = []
    for n, part in long.groupby("n_labels", sort=True):
        by = {m: g.set_index("slice") for m, g in part.groupby("method")}
        ppi, wilson, cp = by[variant], by["wilson"], by["cp"]
        lf = free.set_index("slice").loc[ppi.index]
        rows.append(
            {
                "n_labels": int(n),
                "ppi": variant,
                "slices": len(ppi),
                "ppi_coverage": ppi["coverage"].mean(),
                "ppi_min_slice_coverage": ppi["coverage"].min(),
                "ppi_width": ppi["width"].mean(),
                "ppi_lam": ppi["lam"].mean(),
                "wilson_coverage": wilson["coverage"].mean(),
                "wilson_width": wilson["width"].mean(),
                "cp_coverage": cp["coverage"].mean(),
                "cp_width": cp["width"].mean(),
                "width_ratio_ppi_wilson": ppi["width"].mean() / wilson["width"].mean(),
                "label_free_coverage": float(
                    ((lf["low"] <= lf["true"]) & (lf["true"] <= lf["high"])).mean()
                ),
                "label_free_width": float((lf["high"] - lf["low"]).mean()),
            }
        )
    return pd.DataFrame(rows)


def label_study(
    source: str | Path,
    target: str | Path | None,
    design: dict,
    sizes=SIZES,
    repeats: int = 500,
    seed: int = 0,
    only: list[str] | None = None,
    n_jobs: int = 2,
    label_free: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(table per n and predictor, per-slice draws, label-free per slice) of the study:
    ``target`` scored by an estimator trained on ``source``, or leave one slice out of
    ``source`` when ``target`` is None (``label_free``: see ``loso_scores``)."""
    features = pd.read_parquet(Path(source) / "features.parquet")
    if target is None:
        scored, free = loso_scores(features, design, only, n_jobs, label_free)
    else:
        target_features = pd.read_parquet(Path(target) / "features.parquet")
        scored, free = transfer_scores(features, target_features, design, only, n_jobs)
    long = label_draws(scored, sizes, repeats, seed, 1 - float(design["interval_level"]))
    table = pd.concat([summarise(long, free, v) for v in VARIANTS], ignore_index=True)
    return table, long, free
