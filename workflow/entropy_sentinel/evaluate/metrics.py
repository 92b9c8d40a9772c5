"""How good a slice estimate is: per-slice errors, ranking, per-response discrimination and
calibration, and the per-estimator summary of a held-out study.

"Worth N labels" (``worth_n_labels``): the number n of randomly labelled items per slice whose
sample accuracy has the same mean absolute error as the estimator, over the same slices:
the smallest n with mean_s E|Binomial(n, a_s)/n - a_s| <= MAE, where a_s are the slices' true
accuracies (exact binomial expectation). 0 means worse than a single label per slice.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats
from scipy.stats import ConstantInputWarning, spearmanr
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score

from entropy_sentinel.estimate.slice_estimators import REPORTED


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


def auroc_failure(y, score) -> float:
    """AUROC of a score for detecting failures (higher score = more likely wrong)."""
    return auroc(~np.asarray(y, dtype=bool), score)


def brier(y, p) -> float:
    """Brier score of p(correct)."""
    y = np.asarray(y, dtype=float)
    return float(np.mean((np.asarray(p, dtype=float) - y) ** 2)) if y.size else float("nan")


def reliability_curve(y, p, n_bins: int = 10) -> pd.DataFrame:
    """Per non-empty equal-width bin of p: mean confidence, accuracy and count
    (``sklearn.calibration.calibration_curve``, with the bins' sizes)."""
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    if p.size == 0:
        return pd.DataFrame(columns=["bin", "confidence", "accuracy", "n"])
    accuracy, confidence = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    bins = np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], p)  # sklearn's binning
    count = np.bincount(bins, minlength=n_bins)
    return pd.DataFrame(
        {
            "bin": np.flatnonzero(count),
            "confidence": confidence,
            "accuracy": accuracy,
            "n": count[count > 0],
        }
    )


def expected_calibration_error(y, p, n_bins: int = 10) -> float:
    """ECE: the bins' |accuracy - confidence| weighted by their size (equal-width bins)."""
    curve = reliability_curve(y, p, n_bins)
    if curve.empty:
        return float("nan")
    gap = (curve["accuracy"] - curve["confidence"]).abs()
    return float((gap * curve["n"]).sum() / curve["n"].sum())


# ---------------------------------------------------------------- held-out studies


def expected_label_error(n: int, accuracy: np.ndarray) -> float:
    """mean_s E|Binomial(n, a_s)/n - a_s|: the MAE of estimating each slice from n labels
    (exact up to n = 2000, then the normal approximation sqrt(2 a (1-a) / (pi n)))."""
    if n > 2000:
        a = np.asarray(accuracy, dtype=float)
        return float(np.mean(np.sqrt(2 * a * (1 - a) / (np.pi * n))))
    k = np.arange(n + 1)
    a = np.asarray(accuracy, dtype=float)
    pmf = stats.binom.pmf(k[None, :], n, a[:, None])
    return float(np.mean((pmf * np.abs(k[None, :] / n - a[:, None])).sum(axis=1)))


def worth_n_labels(mae: float, accuracy, n_max: int = 10_000) -> int:
    """The smallest n whose random-label MAE is <= ``mae`` (see the module docstring); 0 when a
    single label per slice does better, n_max when it needs more."""
    a = np.asarray(accuracy, dtype=float)
    if not np.isfinite(mae) or a.size == 0:
        return 0
    if expected_label_error(1, a) <= mae:
        return 0 if expected_label_error(1, a) < mae else 1
    lo, hi = 1, n_max
    if expected_label_error(hi, a) > mae:
        return n_max
    while hi - lo > 1:  # the binomial MAE falls with n up to small ripples
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if expected_label_error(mid, a) > mae else (lo, mid)
    return hi


def tracking(true, point) -> tuple[float, float]:
    """(slope, Spearman) of estimated on true accuracy: does the estimate move with the truth?
    A constant estimate has slope 0; NaN where the truth does not vary."""
    true, point = np.asarray(true, dtype=float), np.asarray(point, dtype=float)
    if true.size < 2 or np.ptp(true) == 0:
        return float("nan"), float("nan")
    slope = float(np.polyfit(true, point, 1)[0])
    if np.ptp(point) == 0:
        return slope, float("nan")
    return slope, float(stats.spearmanr(true, point).statistic)


def difference_error(d: pd.DataFrame) -> float:
    """Mean over pairs of slices of one composition of |estimated - true difference|: how
    wrong a comparison of two slices is (a constant estimate says every difference is 0)."""
    true, point = d["true"].to_numpy(float), d["point"].to_numpy(float)
    i, j = np.triu_indices(len(true), k=1)
    if not i.size:
        return float("nan")
    return float(np.mean(np.abs((point[i] - point[j]) - (true[i] - true[j]))))


def summarise_estimates(long: pd.DataFrame) -> pd.DataFrame:
    """Per estimator: median MAE over compositions, pooled MAE, measured coverage, median
    interval width, worth-N-labels, the share of compositions where it beats ATC[max], and
    whether it tracks the truth: slope and Spearman of estimated on true accuracy over every
    held-out slice, and the median over compositions of the error of a difference between
    two held-out slices.

    ``long`` has one row per (composition, slice, estimator): estimator, composition, true,
    point, low, high."""
    long = long.assign(
        abs_error=(long["point"] - long["true"]).abs(),
        covered=(long["low"] <= long["true"]) & (long["true"] <= long["high"]),
        width=long["high"] - long["low"],
    )
    per_comp = long.groupby(["estimator", "composition"])["abs_error"].mean().unstack(0)
    rows = []
    for name, d in long.groupby("estimator", sort=False):
        comp_mae = per_comp[name]
        beats = (
            float((comp_mae < per_comp["ATC[max]"]).mean()) if "ATC[max]" in per_comp else np.nan
        )
        mae = float(d["abs_error"].mean())
        slope, rho = tracking(d["true"], d["point"])
        diff = d.groupby("composition").apply(difference_error, include_groups=False)
        if diff.isna().all():  # one held-out slice per composition (leave one out): pool them
            diff = pd.Series([difference_error(d)])
        rows.append(
            {
                "estimator": name,
                "mae_median": float(comp_mae.median()),
                "mae": mae,
                "coverage": float(d["covered"].mean()) if d["low"].notna().any() else np.nan,
                "width_median": float(d["width"].median()),
                "worth_n_labels": worth_n_labels(mae, d["true"].to_numpy()),
                "beats_atc_max": beats,
                "slope": slope,
                "spearman": rho,
                "diff_error_median": float(diff.median()),
                "n_compositions": int(comp_mae.notna().sum()),
                "n_slices": len(d),
            }
        )
    order = {n: i for i, n in enumerate(REPORTED)}
    out = pd.DataFrame(rows)
    return out.sort_values("estimator", key=lambda s: s.map(order).fillna(99)).reset_index(
        drop=True
    )
