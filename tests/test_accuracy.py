"""Tests of the slice-level estimators, their shift-aware intervals and worth-N-labels."""

import numpy as np
import pandas as pd
import pytest

from entropy_sentinel.estimate import slice_estimators as acc
from entropy_sentinel.estimate.intervals import SliceInterval
from entropy_sentinel.evaluate import metrics
from entropy_sentinel.evaluate.protocol import composition_study
from entropy_sentinel.features.simulate import shifted_slices

DESIGN = {
    "classifier": "logistic_regression",
    "calibrate": True,
    "balance": False,
    "features": "3D",
    "calibration": "sigmoid",
    "slice_estimate": "atc",
    "seed": 0,
}


@pytest.fixture(scope="module")
def shifted():
    return shifted_slices(n_slices=60, n_per_slice=200, seed=3)


@pytest.fixture(scope="module")
def coverage_rows(shifted):
    """Three disjoint sets of 12 training slices; every estimator scored on the other 48."""
    names = sorted(shifted["domain"].unique())
    order = np.random.default_rng(0).permutation(names)
    rows = []
    for c in range(3):
        train_names = order[12 * c : 12 * (c + 1)]
        train = shifted[shifted["domain"].isin(train_names)]
        panel = acc.EstimatorPanel(design=DESIGN, level=0.9).fit(
            train, train["correct"], train["domain"]
        )
        assert panel.unit_kind_ == "training slice"  # 12 >= min_units: real slices as units
        for name, g in shifted[~shifted["domain"].isin(train_names)].groupby("domain"):
            for est, e in panel.estimate(g).items():
                truth = g["correct"].mean()
                rows.append({"composition": c, "slice": name, "estimator": est, "true": truth,
                             **e.as_dict()})  # fmt: skip
    return pd.DataFrame(rows)


def test_intervals_cover_under_shift_at_the_nominal_level(coverage_rows):
    summary = metrics.summarise_estimates(coverage_rows).set_index("estimator")
    assert summary.loc["ES", "n_slices"] == 3 * 48
    for name in ("ES", "Selected", "ATC[max]", "IW-ES"):
        assert summary.loc[name, "coverage"] >= 0.85, summary.loc[name]
        # not covering by being [0, 1]: a real interval is far narrower
        assert summary.loc[name, "width_median"] < 0.5, summary.loc[name]


def test_interval_from_instance_sampling_alone_undercovers(coverage_rows):
    """The old interval (bootstrap over one slice's rows, estimator held fixed) is about
    ±1.645·sqrt(p(1-p)/n): under concept shift it misses far more than 10 %."""
    d = coverage_rows[coverage_rows["estimator"] == "ES"]
    half = 1.645 * np.sqrt(d["point"] * (1 - d["point"]) / d["n"])
    covered = ((d["point"] - half <= d["true"]) & (d["true"] <= d["point"] + half)).mean()
    assert covered < 0.75


def test_conformal_margin_is_the_right_order_statistic():
    residuals = np.arange(1, 20) / 100  # 19 units
    interval = SliceInterval.from_residuals(residuals, np.full(19, 0.5), np.full(19, 1e9),
                                                0.9, "unit")  # fmt: skip
    # sampling variance ~0: scores are r / sqrt(shift_var); k = ceil(20 * 0.9) = 18
    assert interval.method == "split-conformal"
    assert interval.margin(0.5, 10**9) == pytest.approx(0.18, rel=1e-3)
    few = SliceInterval.from_residuals([0.1, 0.2, 0.1], [0.5] * 3, [1e9] * 3, 0.9, "unit")
    assert few.method.startswith("Student-t")
    none = SliceInterval.from_residuals([0.1], [0.5], [100], 0.9, "unit")
    assert none.around(0.5, 100).low == 0.0 and none.around(0.5, 100).high == 1.0


def test_worth_n_labels_matches_hand_computed_binomial_errors():
    # E|X/n - 0.5| for n=1 is 0.5; for n=4 it is 3/16
    assert metrics.expected_label_error(1, [0.5]) == pytest.approx(0.5)
    assert metrics.expected_label_error(4, [0.5]) == pytest.approx(3 / 16)
    assert metrics.worth_n_labels(3 / 16, [0.5]) <= 4
    assert metrics.worth_n_labels(3 / 16 - 1e-9, [0.5]) > 4
    assert metrics.worth_n_labels(0.9, [0.5]) == 0
    # a perfect estimator is worth more than any finite labelling budget we search
    assert metrics.worth_n_labels(0.0, [0.3, 0.7], n_max=5000) == 5000


def test_selected_is_chosen_inside_the_training_slices(shifted):
    names = sorted(shifted["domain"].unique())[:12]
    train = shifted[shifted["domain"].isin(names)]
    panel = acc.EstimatorPanel(design=DESIGN).fit(train, train["correct"], train["domain"])
    choices = panel.choices()
    assert choices["Selected"] in acc.ES_FAMILY
    assert choices["ATC[best]"].startswith("ATC[")
    # its held-out residuals are exactly those of the candidate it chose
    res = panel.residuals_
    chosen_mae = (res[choices["Selected"]] - res["true"]).abs().mean()
    assert chosen_mae == min((res[c] - res["true"]).abs().mean() for c in acc.ES_FAMILY)


def test_single_estimator_fit_and_estimate(shifted):
    names = sorted(shifted["domain"].unique())
    train = shifted[shifted["domain"].isin(names[:10])]
    target = shifted[shifted["domain"] == names[-1]]
    est = acc.ImportanceWeightedES(DESIGN).fit(train, train["correct"], train["domain"])
    e = est.estimate(target)
    assert e.low <= e.point <= e.high and "not trained on" in e.covers
    assert abs(e.point - target["correct"].mean()) < 0.25
    assert "training slice" in e.covers and "may shift further" not in e.covers  # 10 slices


def test_pseudo_slice_intervals_say_what_they_miss():
    interval = SliceInterval.from_residuals(
        [0.05, -0.02, 0.04, -0.06, 0.01], [0.5] * 5, [40] * 5, 0.9, "pseudo-slice (k-means)"
    )
    assert "may shift further" in interval.covers and "10 or more slices" in interval.covers


def test_composition_study_scores_only_held_out_slices(shifted):
    small = shifted[shifted["domain"].isin(sorted(shifted["domain"].unique())[:4])]
    cfg = {**DESIGN, "interval_level": 0.9, "interval_units": 10}
    long, summary = composition_study(small, "domain", cfg, max_train_slices=1)
    assert set(long["composition"]) == set(small["domain"].unique())
    assert not (long["composition"] == long["slice"]).any()
    assert set(summary["estimator"]) == set(acc.REPORTED)
    assert summary["coverage"].between(0, 1).all() and (summary["worth_n_labels"] >= 0).all()


def test_tracking_metrics_tell_an_estimate_that_moves_from_one_that_does_not():
    truth = [0.1, 0.3, 0.5, 0.9]
    rows = []
    for comp in ("a", "b"):
        for s, t in enumerate(truth):
            for name, point in (("exact", t), ("constant", 0.4), ("squeezed", 0.4 + 0.2 * t)):
                rows.append(
                    {
                        "composition": comp,
                        "slice": s,
                        "estimator": name,
                        "true": t,
                        "point": point,
                        "low": 0.0,
                        "high": 1.0,
                    }
                )
    table = metrics.summarise_estimates(pd.DataFrame(rows)).set_index("estimator")
    assert table.loc["exact", "slope"] == pytest.approx(1)
    assert table.loc["exact", "spearman"] == pytest.approx(1)
    assert table.loc["exact", "diff_error_median"] == pytest.approx(0)
    assert table.loc["squeezed", "slope"] == pytest.approx(0.2)
    assert table.loc["squeezed", "spearman"] == pytest.approx(1)
    assert table.loc["constant", "slope"] == pytest.approx(0)
    assert np.isnan(table.loc["constant", "spearman"])
    pairs = [abs(a - b) for i, a in enumerate(truth) for b in truth[i + 1 :]]
    assert table.loc["constant", "diff_error_median"] == pytest.approx(np.mean(pairs))
    assert table.loc["squeezed", "diff_error_median"] == pytest.approx(0.8 * np.mean(pairs))


def test_slice_calibration_stretches_a_squeezed_estimate_and_is_scored_without_its_unit():
    truth = np.array([0.05, 0.2, 0.35, 0.5, 0.65, 0.8])
    squeezed = 0.2 + 0.15 * truth  # ranks right, squeezed toward the base rate
    cal = acc.SliceCalibrated("ES")
    held_out = cal.fit_units(squeezed, truth, np.full(6, 40))
    a, b = cal.coef_
    assert b == pytest.approx(1 / 0.15) and a == pytest.approx(-0.2 / 0.15)
    assert held_out == pytest.approx(truth)  # exact line: leaving a unit out changes nothing
    noisy = squeezed + np.array([0.01, -0.01, 0.0, 0.01, -0.01, 0.0])
    assert np.abs(cal.fit_units(noisy, truth, np.full(6, 40)) - truth).max() > 0.01
    # too few units, or no spread: the identity
    assert acc.SliceCalibrated.fit_line(np.array([0.3] * 5), truth[:5], np.ones(5)) == (0, 1)
    assert acc.SliceCalibrated.fit_line(squeezed[:3], truth[:3], np.ones(3)) == (0, 1)


def test_a_target_beyond_the_checked_estimates_gets_a_wider_interval(shifted):
    """A slice estimated beyond every held-out unit's estimate is extrapolation: its interval
    widens by the distance, stretched by how squeezed the unit estimates are; the deployed
    estimator carries the same range in its interval."""
    cfg = {"classifier": "logistic_regression", "calibrate": False, "features": "3D"}
    train = shifted[shifted["domain"].isin(sorted(shifted["domain"].unique())[:12])]
    panel = acc.EstimatorPanel(design=cfg).fit(
        train, train["correct"].to_numpy(), train["domain"].to_numpy()
    )
    low, high, stretch = panel.intervals_["ES"].checked
    assert low < high and stretch >= 1
    p = panel.source_.es.p_correct(shifted)
    beyond = shifted.iloc[np.argsort(p)[-150:]]  # the surest rows: an estimate above them all
    inside = shifted.iloc[np.argsort(np.abs(p - (low + high) / 2))[:150]]
    wide, narrow = panel.estimate(beyond)["ES"], panel.estimate(inside)["ES"]
    assert wide.point > high and low <= narrow.point <= high
    margin = panel.intervals_["ES"].margin
    assert wide.high - wide.low > 2 * margin(wide.point, 150) - 1e-9 or wide.high == 1.0
    assert (wide.point - wide.low) - margin(wide.point, 150) == pytest.approx(
        stretch * (wide.point - high)
    )
    restored = SliceInterval.from_dict(panel.intervals_["ES"].as_dict())
    assert restored.around(wide.point, 150) == wide
