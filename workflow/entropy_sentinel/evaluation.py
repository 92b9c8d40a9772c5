"""Slice-level evaluation of accuracy estimators (reference §5.3, §5.5, §9).

Protocol (the paper's): train on the train split of the training slices, then evaluate every
slice on its test split if it is a training slice and on all of its rows otherwise.
Baselines: ATC on single features, the training-set accuracy, and the average confidence of a
univariate Platt model.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ConstantInputWarning, spearmanr
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from .estimators import EntropySentinel, estimator_from_config
from .features import FEATURE_NAMES

log = logging.getLogger(__name__)

SLICE_BY = ("benchmark", "domain")
ATC_REPORTED = ("max", "nll_sum", "se_sum")
AVG_CONF_FEATURE = "max"


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


# ---------------------------------------------------------------- metrics


def abs_errors(true_acc, est_acc) -> np.ndarray:
    """Absolute estimation error (AEE) per slice."""
    return np.abs(np.asarray(est_acc, dtype=float) - np.asarray(true_acc, dtype=float))


def mae(true_acc, est_acc) -> float:
    """Mean absolute estimation error over slices."""
    err = abs_errors(true_acc, est_acc)
    return float(np.mean(err)) if err.size else float("nan")


def spearman(true_acc, est_acc) -> float:
    """Spearman rho over slices; NaN with fewer than 2 slices or constant input."""
    true_acc = np.asarray(true_acc, dtype=float)
    est_acc = np.asarray(est_acc, dtype=float)
    if true_acc.size < 2 or np.ptp(true_acc) == 0 or np.ptp(est_acc) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        return float(spearmanr(true_acc, est_acc).statistic)


def auroc(y, p) -> float:
    """Per-response AUROC of p(correct) against correctness; NaN for one-class slices."""
    y = np.asarray(y, dtype=bool)
    if y.size == 0 or y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, np.asarray(p, dtype=float)))


def brier(y, p) -> float:
    """Brier score of p(correct)."""
    y = np.asarray(y, dtype=float)
    return float(np.mean((np.asarray(p, dtype=float) - y) ** 2)) if y.size else float("nan")


def expected_calibration_error(y, p, n_bins: int = 10) -> float:
    """ECE with equal-width bins on [0, 1], weighted by bin size."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if y.size == 0:
        return float("nan")
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    gap = np.abs(
        np.bincount(bins, weights=y, minlength=n_bins) - np.bincount(bins, p, minlength=n_bins)
    )
    return float(gap.sum() / count.sum())


def reliability_curve(y, p, n_bins: int = 10) -> pd.DataFrame:
    """Per-bin mean confidence, accuracy and count (empty bins dropped)."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    keep = count > 0
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins)[keep],
            "confidence": np.bincount(bins, p, n_bins)[keep] / count[keep],
            "accuracy": np.bincount(bins, y, n_bins)[keep] / count[keep],
            "n": count[keep],
        }
    )


def bootstrap_ci(
    p, n_boot: int = 1000, level: float = 0.95, seed: int = 42, block: int = 256
) -> tuple[float, float]:
    """Percentile bootstrap CI (over instances) of a slice's mean predicted probability."""
    p = np.asarray(p, dtype=float)
    if p.size == 0 or n_boot <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    # blocks bound the (n_boot x n) index matrix's memory on large slices
    for start in range(0, n_boot, block):
        stop = min(start + block, n_boot)
        idx = rng.integers(0, p.size, size=(stop - start, p.size))
        means[start:stop] = p[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


# ---------------------------------------------------------------- baselines


@dataclass(frozen=True)
class ATC:
    """Average Thresholded Confidence on single features (Garg et al. 2022; reference §5.5).

    sign orients each feature so that correct rows score higher on average; threshold is the
    source-error quantile of the oriented source scores.
    """

    sign: np.ndarray
    threshold: np.ndarray
    feature_names: tuple[str, ...]

    @classmethod
    def fit(cls, X_source, y_source, feature_names: tuple[str, ...] | None = None) -> ATC:
        """Orient and threshold every column of X_source (rows x features)."""
        X = np.atleast_2d(np.asarray(X_source, dtype=float).T).T
        y = np.asarray(y_source, dtype=bool)
        if y.size == 0:
            raise ValueError("ATC needs labelled source rows")
        mean_ok = X[y].mean(axis=0) if y.any() else np.zeros(X.shape[1])
        mean_bad = X[~y].mean(axis=0) if (~y).any() else np.zeros(X.shape[1])
        sign = np.where(mean_ok >= mean_bad, 1.0, -1.0)
        source_error = 1.0 - y.mean()
        threshold = np.quantile(X * sign, source_error, axis=0)
        names = tuple(feature_names) if feature_names else tuple(map(str, range(X.shape[1])))
        return cls(sign=sign, threshold=np.atleast_1d(threshold), feature_names=names)

    def estimate(self, X) -> np.ndarray:
        """Estimated accuracy per feature: the fraction of oriented scores >= threshold."""
        X = np.atleast_2d(np.asarray(X, dtype=float).T).T
        if X.shape[0] == 0:
            return np.full(X.shape[1], np.nan)
        return np.mean(X * self.sign >= self.threshold, axis=0)


def atc_estimate(score_source, y_source, score_target) -> float:
    """ATC estimate for one score vector: fit on source rows, estimate on target rows."""
    atc = ATC.fit(np.asarray(score_source, dtype=float)[:, None], y_source)
    return float(atc.estimate(np.asarray(score_target, dtype=float)[:, None])[0])


class PlattConfidence:
    """ "Average confidence" baseline: a univariate Platt model on one feature; a slice's
    estimate is the mean calibrated probability."""

    def __init__(self, feature: str = AVG_CONF_FEATURE):
        self.feature = feature

    def fit(self, x, y) -> PlattConfidence:
        x = np.asarray(x, dtype=float)
        self.mu_, self.sd_ = float(x.mean()), float(x.std() or 1.0)
        y = np.asarray(y, dtype=bool)
        if y.all() or not y.any():
            self.const_ = float(y.mean())
            self.model_ = None
        else:
            self.model_ = LogisticRegression().fit(((x - self.mu_) / self.sd_)[:, None], y)
        return self

    def predict_proba(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if self.model_ is None:
            return np.full(x.size, self.const_)
        return self.model_.predict_proba(((x - self.mu_) / self.sd_)[:, None])[:, 1]


# ---------------------------------------------------------------- the evaluation protocol


@dataclass
class EvaluationResult:
    """Output of run_evaluation."""

    per_slice: pd.DataFrame
    metrics: dict[str, Any]
    estimator: EntropySentinel
    predictions: pd.DataFrame  # evaluation rows: item_id, slice, in_training, correct, p


def run_evaluation(
    features_df: pd.DataFrame,
    train_slices: list[str],
    slice_by: str = "domain",
    estimator_config: dict[str, Any] | None = None,
    seed: int = 42,
    n_boot: int = 1000,
) -> EvaluationResult:
    """Fit an Entropy Sentinel on the training slices and evaluate every slice."""
    cfg = dict(estimator_config or {})
    cfg.setdefault("seed", seed)
    df, dropped = clean_features(features_df)
    slices = slice_labels(df, slice_by)
    train_slices = [str(s) for s in train_slices]
    unknown = sorted(set(train_slices) - set(slices.unique()))
    if unknown:
        raise ValueError(f"training slices not in the data ({slice_by}): {unknown}")
    train_mask, eval_mask = protocol_masks(slices, df["split"], train_slices)
    X = df.loc[:, list(FEATURE_NAMES)].to_numpy(dtype=float)
    y = df["correct"].to_numpy(dtype=bool)

    provenance = {
        "train_slices": train_slices,
        "slice_by": slice_by,
        "models": sorted(df["model"].astype(str).unique()),
        "benchmarks": sorted(df["benchmark"].astype(str).unique()),
    }
    est = estimator_from_config(cfg).fit(
        df.loc[train_mask], y[train_mask], provenance, allow_degenerate=True
    )
    if est.provenance_["degenerate"]:
        log.warning("training rows cannot train a classifier: %s", est.provenance_["degenerate"])
    p = est.predict_proba(df.loc[eval_mask])
    y_eval, X_eval, s_eval = y[eval_mask], X[eval_mask], slices[eval_mask].to_numpy()

    atc = ATC.fit(X[train_mask], y[train_mask], FEATURE_NAMES)
    avg_conf_feature = cfg.get("avg_conf_feature", AVG_CONF_FEATURE)
    fidx = FEATURE_NAMES.index(avg_conf_feature)
    platt = PlattConfidence(avg_conf_feature).fit(X[train_mask, fidx], y[train_mask])
    train_accuracy = float(y[train_mask].mean())
    n_boot = int(cfg.get("bootstrap", n_boot))

    rows, atc_rows = [], []
    for i, name in enumerate(sorted(pd.unique(s_eval))):
        m = s_eval == name
        yi, pi = y_eval[m], p[m]
        atc_est = atc.estimate(X_eval[m])
        atc_rows.append(atc_est)
        low, high = bootstrap_ci(pi, n_boot, seed=seed + i)
        row = {
            "slice": name,
            "in_training": name in train_slices,
            "n": int(m.sum()),
            "n_correct": int(yi.sum()),
            "true_accuracy": float(yi.mean()),
            "estimated_accuracy": float(pi.mean()),
            "abs_error": abs(float(pi.mean()) - float(yi.mean())),
            "ci_low": low,
            "ci_high": high,
            "auroc": auroc(yi, pi),
            "brier": brier(yi, pi),
            "ece": expected_calibration_error(yi, pi),
            "trivial_estimate": train_accuracy,
            "avg_conf_estimate": float(platt.predict_proba(X_eval[m, fidx]).mean()),
        }
        for feat in ATC_REPORTED:
            row[f"atc_{feat}_estimate"] = float(atc_est[FEATURE_NAMES.index(feat)])
            row[f"atc_{feat}_abs_error"] = abs(row[f"atc_{feat}_estimate"] - row["true_accuracy"])
        rows.append(row)
    per_slice = pd.DataFrame(rows)
    true_acc = per_slice["true_accuracy"].to_numpy()
    atc_mae = {f: mae(true_acc, np.array(atc_rows)[:, j]) for j, f in enumerate(FEATURE_NAMES)}
    ood = ~np.isin(s_eval, train_slices)
    metrics: dict[str, Any] = {
        "n_slices": len(per_slice),
        "n_train": int(train_mask.sum()),
        "n_eval": int(eval_mask.sum()),
        **dropped.as_dict(),
        "train_slices": train_slices,
        "slice_by": slice_by,
        "estimator": est.config(),
        "degenerate": est.provenance_["degenerate"],
        "best_params": est.metadata()["best_params"],
        "mae": mae(true_acc, per_slice["estimated_accuracy"]),
        "spearman": spearman(true_acc, per_slice["estimated_accuracy"]),
        "max_abs_error": float(per_slice["abs_error"].max()),
        "auroc_pooled": auroc(y_eval, p),
        "auroc_ood_pooled": auroc(y_eval[ood], p[ood]),
        "brier": brier(y_eval, p),
        "ece": expected_calibration_error(y_eval, p),
        "atc_max_mae": atc_mae["max"],
        "atc_max_spearman": spearman(true_acc, per_slice["atc_max_estimate"]),
        "atc_mae": atc_mae,
        "atc_best_feature": min(atc_mae, key=lambda k: np.nan_to_num(atc_mae[k], nan=np.inf)),
        "train_accuracy": train_accuracy,
        "train_accuracy_mae": mae(true_acc, per_slice["trivial_estimate"]),
        "avg_conf_feature": avg_conf_feature,
        "avg_conf_mae": mae(true_acc, per_slice["avg_conf_estimate"]),
    }
    predictions = pd.DataFrame(
        {
            "item_id": df.loc[eval_mask, "item_id"].to_numpy(),
            "slice": s_eval,
            "in_training": np.isin(s_eval, train_slices),
            "correct": y_eval,
            "p_correct": p,
        }
    )
    return EvaluationResult(per_slice, metrics, est, predictions)


def evaluate_slices(
    features_df: pd.DataFrame,
    train_slices: list[str],
    slice_by: str = "domain",
    estimator_config: dict[str, Any] | None = None,
    seed: int = 42,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(per_slice_df, metrics) of the paper's protocol; see run_evaluation."""
    result = run_evaluation(features_df, train_slices, slice_by, estimator_config, seed)
    return result.per_slice, result.metrics


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
            "p_correct": estimator.predict_proba(df.loc[eval_mask]),
        }
    )
