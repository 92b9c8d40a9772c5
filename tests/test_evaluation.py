"""Tests of the metrics, ATC, baselines and the slice-evaluation protocol."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from entropy_sentinel.evaluate import metrics
from entropy_sentinel.evaluate import protocol as ev
from entropy_sentinel.features.simulate import synthetic_features

SHIFTS = {"easy": -1.5, "mid_easy": -0.5, "mid_hard": 0.5, "hard": 1.5}


@pytest.fixture(scope="module")
def table():
    return synthetic_features(SHIFTS, n_per_slice=600, seed=3)


def test_metrics_match_hand_computations():
    y = np.array([1, 0, 1, 1, 0], dtype=bool)
    p = np.array([0.9, 0.2, 0.6, 0.4, 0.5])
    assert metrics.brier(y, p) == pytest.approx(np.mean((p - y) ** 2))
    # pairs (pos, neg): 0.9>0.2, 0.9>0.5, 0.6>0.2, 0.6>0.5, 0.4>0.2, 0.4<0.5 -> 5/6
    assert metrics.auroc(y, p) == pytest.approx(5 / 6)
    assert np.isnan(metrics.auroc(np.ones(3, bool), [0.1, 0.2, 0.3]))
    # bins: 0.9->8, 0.2->1, 0.6->5, 0.4->3, 0.5->4; each bin holds one row: ECE = mean|y - p|
    assert metrics.expected_calibration_error(y, p) == pytest.approx(np.mean(np.abs(y - p)))
    curve = metrics.reliability_curve(y, p)
    assert curve["n"].tolist() == [1] * 5 and curve["bin"].tolist() == [1, 3, 4, 5, 8]
    assert curve["accuracy"].tolist() == [0, 1, 0, 1, 1]
    assert np.isnan(metrics.expected_calibration_error([], []))
    assert metrics.mae([0.5, 0.8], [0.6, 0.5]) == pytest.approx(0.2)
    true, est = [0.1, 0.5, 0.3, 0.9], [0.2, 0.4, 0.35, 0.7]
    assert metrics.spearman(true, est) == pytest.approx(spearmanr(true, est).statistic)
    assert np.isnan(metrics.spearman([0.5], [0.5]))
    assert np.isnan(metrics.spearman([0.1, 0.2], [0.3, 0.3]))


def test_atc_hand_computed_case():
    from entropy_sentinel.estimate.slice_estimators import ATCFeature, SourceFit

    # source: 10 rows, 4 wrong (error 0.4); correct rows have LOW scores -> sign = -1
    score = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], dtype=float)
    y = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    frame = pd.DataFrame(0.0, index=range(10), columns=list(ev.FEATURE_NAMES)).assign(max=score)
    src = SourceFit.labelled(frame, y)
    atc = ATCFeature("max").fit_source(src)
    assert atc.sign_ == -1.0
    # oriented scores -10..-1; 6 of 10 right, so the threshold is the 6th highest, -6
    assert (atc.threshold_.t, atc.threshold_.w) == (-6.0, 1.0)
    # fraction of source at or above the threshold = source accuracy
    assert atc.point(src, frame, None) == pytest.approx(0.6)
    target = frame.iloc[:4].assign(max=[2.0, 6.0, 7.0, 100.0])  # oriented: two >= -6
    assert atc.point(src, target, None) == pytest.approx(0.5)


def test_atc_counts_tied_scores_in_part():
    """Tree-model probabilities tie in blocks: 1 right of 10, all ten scores equal. The tied
    block counts with weight 0.1, so ATC says 0.1 on the source, not 1 (or 0)."""
    from entropy_sentinel.estimate.slice_estimators import ATCThreshold

    y = np.arange(10) == 0
    atc = ATCThreshold.fit(np.full(10, 0.3), y)
    assert atc.share(np.full(10, 0.3)) == pytest.approx(0.1)
    assert atc.share(np.array([0.3, 0.3, 0.5, 0.1])) == pytest.approx((0.1 + 0.1 + 1) / 4)
    scores = np.array([0.1, 0.2, 0.2, 0.2, 0.9])  # 2 right: the top one and one of the ties
    assert ATCThreshold.fit(scores, np.array([0, 0, 1, 0, 1], bool)).share(scores) == 0.4
    assert ATCThreshold.fit(scores, np.zeros(5, bool)).share(scores) == 0.0


def test_clean_features_drops_and_counts(table):
    df = table.copy()
    df["correct"] = df["correct"].astype(object)
    df.loc[0, "correct"] = None
    df.loc[1, "max"] = np.nan
    out, counts = ev.clean_features(df)
    assert (counts.ungraded, counts.empty) == (1, 1)
    assert len(out) == len(df) - 2 and out["correct"].dtype == bool


def test_protocol_masks():
    slices = pd.Series(["a", "a", "b", "b"])
    split = pd.Series(["train", "test", "train", "test"])
    train, evaluate = ev.protocol_masks(slices, split, ["a"])
    assert train.tolist() == [True, False, False, False]
    assert evaluate.tolist() == [False, True, True, True]


CFG = {
    "classifier": "logistic_regression",
    "calibrate": True,
    "balance": False,
    "features": "17D",
    "calibration": "sigmoid",
    "slice_estimate": "atc",
    "seed": 0,
    "interval_level": 0.9,
    "interval_units": 10,
}


@pytest.fixture(scope="module")
def evaluated(table):
    return ev.run_evaluation(table, ["easy", "hard"], "domain", CFG)


def test_run_evaluation_well_specified_estimator_is_accurate(evaluated):
    per_slice, m = evaluated.per_slice, evaluated.metrics
    expected_cols = {
        "slice", "in_training", "n", "true_accuracy", "estimated_accuracy", "abs_error",
        "interval_low", "interval_high", "covered", "auroc", "brier", "estimate:ATC[max]",
        "estimate:Selected", "estimate:train accuracy",
    }  # fmt: skip
    assert expected_cols <= set(per_slice.columns)
    assert len(per_slice) == 4
    n = per_slice.set_index("slice")["n"]
    assert n["easy"] == 120 and n["mid_easy"] == 600  # test split in training, all rows otherwise
    assert m["mae"] < 0.05 and m["spearman"] == pytest.approx(1.0)
    assert m["atc_max_mae"] < 0.06
    # the trivial baseline cannot follow the very different base rates
    assert m["estimators"]["train accuracy"]["mae"] > 0.15
    assert set(m["selected"]) == {"Selected", "ATC[best]"}
    assert (per_slice["interval_low"] <= per_slice["estimated_accuracy"]).all()
    assert (per_slice["estimated_accuracy"] <= per_slice["interval_high"]).all()
    # every estimator has an interval that says what it covers
    est = evaluated.estimates
    assert est["estimator"].nunique() == 12 and est["covers"].str.contains("not trained on").all()
    assert evaluated.estimator.interval_ is not None


def test_shuffled_labels_give_large_error(table):
    shuffled = table.copy()
    shuffled["correct"] = np.random.default_rng(0).permutation(shuffled["correct"].to_numpy())
    # labels no longer depend on the features, yet the evaluation uses the true labels
    from entropy_sentinel.estimate.classifier import EntropySentinel

    train = shuffled[shuffled["split"] == "train"]
    est = EntropySentinel("logistic_regression", calibrate=True, balance=False, features="17D")
    est.fit(train, train["correct"])
    true_acc, est_acc = [], []
    for _, g in table.groupby("domain"):
        true_acc.append(g["correct"].mean())
        est_acc.append(est.estimate(g).point)
    assert metrics.mae(true_acc, est_acc) > 0.15


def test_unknown_training_slice_is_an_error(table):
    with pytest.raises(ValueError, match="not in the data"):
        ev.run_evaluation(table, ["nope"], "domain", CFG)


def test_average_confidence_baseline_is_calibrated(table):
    from entropy_sentinel.estimate.slice_estimators import AverageConfidence, SourceFit

    train = table[table["split"] == "train"]
    src = SourceFit.labelled(train, train["correct"])
    baseline = AverageConfidence("max").fit_source(src)
    assert baseline.point(src, train, None) == pytest.approx(train["correct"].mean(), abs=0.01)


def test_summary_markdown_and_strict_json(evaluated, tmp_path):
    import json

    from entropy_sentinel.provenance import write_json
    from entropy_sentinel.report.render import summary_markdown

    per_slice, m = evaluated.per_slice, dict(evaluated.metrics)
    md = summary_markdown({"toy-model": (per_slice, m)})
    assert "## toy-model" in md and "| mid_easy |" in md and "Spearman" in md
    assert "not trained on" in md
    m["nan_metric"] = float("nan")
    write_json(m, tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["nan_metric"] is None


@pytest.mark.parametrize("readout", ["atc", "calibrated", "mean"])
def test_the_deployed_estimator_reproduces_its_panel_estimator(readout, tmp_path):
    """What `entropy-sentinel train` saves estimates a slice exactly as the held-out study's
    estimator of the same name did (ATC[ES p], ES-cal, ES), interval included, after a save
    and load; rows of a stream aggregate to the same number."""
    from entropy_sentinel.estimate.classifier import load_estimator
    from entropy_sentinel.features.simulate import shifted_slices

    rows = shifted_slices(n_slices=14, n_per_slice=120, seed=5)
    train, target = rows[rows["domain"] != "s013"], rows[rows["domain"] == "s013"]
    cfg = {**CFG, "features": "3D", "slice_estimate": readout, "interval_units": 10}
    panel, est = ev.fit_deployed(train, "domain", cfg)
    expected = panel.estimate(target)[ev.DEPLOYED[readout]]
    loaded = load_estimator(est.save(tmp_path / "e.skops"))
    for e in (est, loaded):
        got = e.estimate(target)
        assert got.point == pytest.approx(expected.point, abs=1e-9)
        assert (got.low, got.high) == pytest.approx((expected.low, expected.high), abs=1e-9)
    halves = [loaded.row_estimates(target.iloc[:60]), loaded.row_estimates(target.iloc[60:])]
    assert loaded.estimate_from_rows(np.concatenate(halves)).point == pytest.approx(
        expected.point, abs=1e-9
    )
    if readout == "calibrated":
        assert loaded.slice_map_ != (0.0, 1.0)
