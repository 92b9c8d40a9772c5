"""Slice-level evaluation of accuracy estimators (reference §5.3, §5.5, §9).

Protocol (the paper's): train on the train split of the training slices, then evaluate every
slice on its test split if it is a training slice and on all of its rows otherwise.
Every slice estimate comes from the estimators of ``accuracy.py`` (the paper's ES, estimators
from the label-free accuracy-estimation literature, a nested selection among them, and the
baselines), each with its shift-aware interval. ``composition_study`` repeats the protocol over
every training composition of up to k slices and measures the estimators' error, interval
coverage and width on slices they were not trained on.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from entropy_sentinel.config.loading import schema_defaults
from entropy_sentinel.estimate.classifier import EntropySentinel, feature_names
from entropy_sentinel.estimate.regime import (
    FeatureSupport,
    TrainingRegime,
    recorded_settings,
)
from entropy_sentinel.estimate.slice_estimators import REPORTED, EstimatorPanel
from entropy_sentinel.evaluate.metrics import (
    auroc,
    brier,
    expected_calibration_error,
    mae,
    spearman,
    summarise_estimates,
)
from entropy_sentinel.features.compute import FEATURE_NAMES, FeatureSpec

log = logging.getLogger(__name__)

SLICE_BY = ("benchmark", "domain", "slice")


# ---------------------------------------------------------------- data preparation


@dataclass(frozen=True)
class DropCounts:
    """Rows removed before training/evaluation."""

    ungraded: int
    empty: int

    def as_dict(self) -> dict[str, int]:
        return {"n_dropped_ungraded": self.ungraded, "n_dropped_empty": self.empty}


def clean_features(df: pd.DataFrame) -> tuple[pd.DataFrame, DropCounts]:
    """Drop ungraded rows (correct is null) and empty responses (NaN features); count both."""
    ungraded = df["correct"].isna()
    empty = df.loc[:, list(FEATURE_NAMES)].isna().any(axis=1) & ~ungraded
    out = df.loc[~ungraded & ~empty].copy()
    out["correct"] = out["correct"].astype(bool)
    return out.reset_index(drop=True), DropCounts(int(ungraded.sum()), int(empty.sum()))


def slice_labels(df: pd.DataFrame, slice_by: str) -> pd.Series:
    """The slice of each row."""
    if slice_by not in SLICE_BY:
        raise ValueError(f"slice_by must be one of {SLICE_BY}, got {slice_by!r}")
    return df[slice_by].astype(str)


def protocol_masks(
    slices: pd.Series, split: pd.Series, train_slices: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, evaluation rows): train split of training slices; test split of
    training slices plus every row of the other slices."""
    in_train_slice = slices.isin(list(train_slices)).to_numpy()
    is_train = (split.astype(str) == "train").to_numpy()
    return in_train_slice & is_train, ~(in_train_slice & is_train)


@dataclass
class EvaluationResult:
    """Output of run_evaluation."""

    per_slice: pd.DataFrame  # one row per slice: truth, ES estimate and interval, metrics
    estimates: pd.DataFrame  # one row per slice x estimator: point, low, high, covered
    metrics: dict[str, Any]
    estimator: EntropySentinel  # the ES classifier, with its interval, as deployed
    predictions: pd.DataFrame  # evaluation rows: item_id, slice, in_training, correct, p


def _panel(cfg: dict[str, Any], n_jobs: int = 1) -> EstimatorPanel:
    return EstimatorPanel(
        design=EntropySentinel.from_config(cfg).config(),
        level=float(cfg["interval_level"]),
        min_units=int(cfg["interval_units"]),
        seed=int(cfg["seed"]),
        n_jobs=n_jobs,
    )


# what the provenance lists the names of, and the column they come from
_NAMED = {"models": "model", "benchmarks": "benchmark"}

# the panel's estimator that each slice_estimate of the deployed classifier reproduces
DEPLOYED = {"atc": "ATC[ES p]", "calibrated": "ES-cal", "mean": "ES"}


def fit_deployed(
    features_df: pd.DataFrame,
    slice_by: str,
    estimator_config: dict[str, Any],
    feature_spec: FeatureSpec | None = None,
    provenance: dict[str, Any] | None = None,
    n_jobs: int = 1,
) -> tuple[EstimatorPanel, EntropySentinel]:
    """Every estimator fitted on labelled rows, with intervals from their slices, and the ES
    classifier as deployed, with the interval of its slice estimate (``DEPLOYED``): what rule
    evaluate fits on its training rows and `entropy-sentinel train` on all rows."""
    df = features_df.reset_index(drop=True)
    slices = slice_labels(df, slice_by)
    y = df["correct"].to_numpy(dtype=bool)
    provenance = {
        "slice_by": slice_by,
        "train_slices": sorted(slices.unique()),
        **{k: sorted(df[c].astype(str).unique()) if c in df else [] for k, c in _NAMED.items()},
        **(provenance or {}),
    }
    panel = _panel(estimator_config, n_jobs).fit(df, y, slices, feature_spec, provenance)
    estimator = panel.source_.es
    # ES-cal is fitted when some training unit could be left out
    slice_map = panel.fitted_["ES-cal"].coef_ if "ES-cal" in panel.fitted_ else None
    regime = training_regime(estimator, df, slices, estimator_config, provenance)
    estimator.deploy(panel.intervals_.get(DEPLOYED[estimator.slice_estimate]), slice_map, regime)
    return panel, estimator


def training_regime(estimator, df, slices, estimator_config, provenance) -> TrainingRegime:
    """What the training rows were made like: their generation settings and feature support."""
    options = {**schema_defaults("estimator", "regime"), **estimator_config.get("regime", {})}
    columns = list(feature_names(estimator.features) or FEATURE_NAMES)
    support = FeatureSupport.fit(
        df[columns].to_numpy(),
        slices.to_numpy(),
        columns,
        quantile=options["support_quantile"],
        min_rows=options["min_rows"],
        seed=estimator.seed,
    )
    settings = recorded_settings(provenance)
    return TrainingRegime(settings, support, options["under_shift"], options["widen_by"])


def run_evaluation(
    features_df: pd.DataFrame,
    train_slices: list[str],
    slice_by: str,
    estimator_config: dict[str, Any],
    feature_spec: FeatureSpec | None = None,
    n_jobs: int = 1,
) -> EvaluationResult:
    """Fit every estimator on the training slices' train split and estimate every slice."""
    cfg = estimator_config
    df, dropped = clean_features(features_df)
    slices = slice_labels(df, slice_by)
    train_slices = [str(s) for s in train_slices]
    unknown = sorted(set(train_slices) - set(slices.unique()))
    if unknown:
        raise ValueError(f"training slices not in the data ({slice_by}): {unknown}")
    train_mask, eval_mask = protocol_masks(slices, df["split"], train_slices)
    y = df["correct"].to_numpy(dtype=bool)
    provenance = {k: sorted(df[c].astype(str).unique()) for k, c in _NAMED.items() if c in df}
    panel, est = fit_deployed(df.loc[train_mask], slice_by, cfg, feature_spec, provenance, n_jobs)
    p = est.p_correct(df.loc[eval_mask])
    y_eval, s_eval = y[eval_mask], slices[eval_mask].to_numpy()
    eval_rows = df.loc[eval_mask].reset_index(drop=True)

    rows, long = [], []
    for name in sorted(pd.unique(s_eval)):
        m = s_eval == name
        truth = float(y_eval[m].mean())
        estimates = panel.estimate(eval_rows.loc[m])
        for est_name, e in estimates.items():
            long.append(
                {
                    "slice": name,
                    "in_training": name in train_slices,
                    "true": truth,
                    "estimator": est_name,
                    **e.as_dict(),
                }
            )
        es = estimates[DEPLOYED[est.slice_estimate]]
        rows.append(
            {
                "slice": name,
                "in_training": name in train_slices,
                "n": int(m.sum()),
                "n_correct": int(y_eval[m].sum()),
                "true_accuracy": truth,
                "estimated_accuracy": es.point,
                "abs_error": abs(es.point - truth),
                "interval_low": es.low,
                "interval_high": es.high,
                "covered": es.low <= truth <= es.high,
                "auroc": auroc(y_eval[m], p[m]),
                "brier": brier(y_eval[m], p[m]),
                "ece": expected_calibration_error(y_eval[m], p[m]),
                **{f"estimate:{n}": estimates[n].point for n in REPORTED if n in estimates},
            }
        )
    per_slice = pd.DataFrame(rows)
    estimates = pd.DataFrame(long)
    ood = ~np.isin(s_eval, train_slices)
    deployed = DEPLOYED[est.slice_estimate]
    interval = panel.intervals_.get(deployed)
    pooled = p_metrics(y_eval, p, ood)
    by_estimator = {
        name: {
            "mae": mae(d["true"], d["point"]),
            "mae_ood": mae(d.loc[~d["in_training"], "true"], d.loc[~d["in_training"], "point"]),
            "spearman": spearman(d["true"], d["point"]),
        }
        for name, d in estimates.groupby("estimator", sort=False)
    }
    metrics: dict[str, Any] = {
        "n_slices": len(per_slice),
        "n_train": int(train_mask.sum()),
        "n_eval": int(eval_mask.sum()),
        **dropped.as_dict(),
        "train_slices": train_slices,
        "slice_by": slice_by,
        "estimator": est.config(),
        "feature_spec": est.feature_spec_.as_dict(),
        "deployed": deployed,
        "interval": interval.as_dict() | {"covers": interval.covers} if interval else None,
        "selected": panel.choices(),
        "degenerate": est.degenerate_,
        "best_params": est.metadata()["best_params"],
        **by_estimator[deployed],
        "max_abs_error": float(per_slice["abs_error"].max()),
        **{f"{k}_pooled" if k.startswith("auroc") else k: v for k, v in pooled.items()},
        "train_accuracy": float(y[train_mask].mean()),
        "estimators": by_estimator,
        "atc_max_mae": by_estimator["ATC[max]"]["mae"],
    }
    predictions = pd.DataFrame(
        {
            "item_id": eval_rows["item_id"].to_numpy(),
            "slice": s_eval,
            "in_training": np.isin(s_eval, train_slices),
            "correct": y_eval,
            "p_correct": p,
        }
    )
    return EvaluationResult(per_slice, estimates, metrics, est, predictions)


def p_metrics(y: np.ndarray, p: np.ndarray, ood: np.ndarray) -> dict[str, float]:
    """The row-level scores of p(correct) on evaluation rows: AUROC (also on the rows of
    slices outside the training ones, ``ood``), Brier score and ECE."""
    return {
        "auroc": auroc(y, p),
        "auroc_ood": auroc(y[ood], p[ood]),
        "brier": brier(y, p),
        "ece": expected_calibration_error(y, p),
    }


def compositions(slices: Sequence[str], max_k: int) -> list[tuple[str, ...]]:
    """All training compositions of 1..max_k slices, by k then lexicographically."""
    names = sorted(slices)
    return [
        c for k in range(1, min(max_k, len(names)) + 1) for c in itertools.combinations(names, k)
    ]


def leave_one_out(slices: Sequence[str]) -> list[tuple[str, ...]]:
    """Every slice held out once: the training composition of all the others."""
    names = sorted(slices)
    return [tuple(n for n in names if n != out) for out in names]


def sampled_compositions(
    slices: Sequence[str], sizes: Sequence[int], n_per_size: int, seed: int = 0
) -> list[tuple[str, ...]]:
    """Up to ``n_per_size`` distinct compositions of each size, drawn by ``seed`` (all of them
    when there are fewer): the 1-3-slice protocol where every composition would be too many."""
    names, rng, out = sorted(slices), np.random.default_rng(seed), []
    for k in sizes:
        every = math.comb(len(names), k)
        if every <= n_per_size:
            out += list(itertools.combinations(names, k))
            continue
        drawn: set[tuple[str, ...]] = set()
        while len(drawn) < n_per_size:
            drawn.add(tuple(sorted(rng.choice(names, size=k, replace=False).tolist())))
        out += sorted(drawn)
    return out


def composition_study(
    features_df: pd.DataFrame,
    slice_by: str,
    estimator_config: dict[str, Any],
    max_train_slices: int | None = None,
    n_jobs: int = 1,
    training: Sequence[tuple[str, ...]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The protocol over every composition of 1..max_train_slices training slices, or over
    the compositions ``training`` lists (see leave_one_out, sampled_compositions).

    Returns (long, summary): one row per (composition, evaluated slice, estimator) with the
    estimate, its interval and the truth; and per estimator the median MAE over compositions,
    the measured coverage of its interval, the median width and worth-N-labels. Only slices
    outside the composition are scored, so every number is on a slice the estimators, their
    intervals and their nested selections never saw.
    """
    df, _ = clean_features(features_df)
    slices = slice_labels(df, slice_by)
    y = df["correct"].to_numpy(dtype=bool)
    names = sorted(slices.unique())
    if training is None:
        training = compositions(names, max_train_slices)
    long = []
    for comp in training:
        if len(comp) == len(names):
            continue
        train, _ = protocol_masks(slices, df["split"], list(comp))
        if min(y[train].sum(), (~y[train]).sum()) < 2:
            log.info("composition %s skipped: fewer than 2 rows of a class", comp)
            continue
        result = run_evaluation(df, list(comp), slice_by, estimator_config, n_jobs=n_jobs)
        held_out = result.estimates[~result.estimates["in_training"]]
        long.append(
            held_out.drop(columns="in_training").assign(composition="+".join(comp), k=len(comp))
        )
        log.info("composition %s done", "+".join(comp))
    if not long:
        return pd.DataFrame(), pd.DataFrame()
    long = pd.concat(long, ignore_index=True)
    first = ["composition", "k", "slice", "estimator", "true"]
    long = long[first + [c for c in long.columns if c not in first]]
    return long, summarise_estimates(long)


def transfer_study(
    source_df: pd.DataFrame,
    target_df: pd.DataFrame,
    slice_by: str,
    estimator_config: dict[str, Any],
    n_jobs: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The deployment path: fit every estimator on all labelled rows of one regime (its
    intervals from its own slices), then estimate each slice of another regime, where the
    truth is known but never seen. Returns (long, per-estimator table) as composition_study."""
    source, _ = clean_features(source_df)
    target, _ = clean_features(target_df)
    slices = slice_labels(source, slice_by)
    y = source["correct"].to_numpy(dtype=bool)
    panel = _panel(estimator_config, n_jobs).fit(source, y, slices)
    target_slices = slice_labels(target, slice_by)
    long = []
    for name in sorted(target_slices.unique()):
        m = (target_slices == name).to_numpy()
        truth = float(target.loc[m, "correct"].mean())
        for est_name, e in panel.estimate(target.loc[m]).items():
            long.append(
                {
                    "composition": "source",
                    "k": int(slices.nunique()),
                    "slice": name,
                    "estimator": est_name,
                    "true": truth,
                    **e.as_dict(),
                }
            )
    long = pd.DataFrame(long)
    return long, summarise_estimates(long)


def prediction_rows(features_df: pd.DataFrame, estimator: EntropySentinel) -> pd.DataFrame:
    """Per-response predictions of a saved estimator on its evaluation rows, re-deriving the
    protocol from the training slices and slicing stored in its provenance."""
    df, _ = clean_features(features_df)
    train_slices = list(estimator.provenance_.get("train_slices", []))
    slices = slice_labels(df, estimator.provenance_.get("slice_by", "benchmark"))
    _, eval_mask = protocol_masks(slices, df["split"], train_slices)
    s_eval = slices[eval_mask].to_numpy()
    return pd.DataFrame(
        {
            "item_id": df.loc[eval_mask, "item_id"].to_numpy(),
            "slice": s_eval,
            "in_training": np.isin(s_eval, train_slices),
            "correct": df.loc[eval_mask, "correct"].to_numpy(dtype=bool),
            "p_correct": estimator.p_correct(df.loc[eval_mask]),
        }
    )
