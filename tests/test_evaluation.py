"""Tests of the metrics, ATC, baselines and the slice-evaluation protocol."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from entropy_sentinel import evaluation as ev
from entropy_sentinel.simulate import synthetic_features

SHIFTS = {"easy": -1.5, "mid_easy": -0.5, "mid_hard": 0.5, "hard": 1.5}


@pytest.fixture(scope="module")
def table():
    return synthetic_features(SHIFTS, n_per_slice=600, seed=3)


def test_metrics_match_hand_computations():
    y = np.array([1, 0, 1, 1, 0], dtype=bool)
    p = np.array([0.9, 0.2, 0.6, 0.4, 0.5])
    assert ev.brier(y, p) == pytest.approx(np.mean((p - y) ** 2))
    # pairs (pos, neg): 0.9>0.2, 0.9>0.5, 0.6>0.2, 0.6>0.5, 0.4>0.2, 0.4<0.5 -> 5/6
    assert ev.auroc(y, p) == pytest.approx(5 / 6)
    assert np.isnan(ev.auroc(np.ones(3, bool), [0.1, 0.2, 0.3]))
    # bins: 0.9->9, 0.2->2, 0.6->6, 0.4->4, 0.5->5; each bin holds one row: ECE = mean|y - p|
    assert ev.expected_calibration_error(y, p) == pytest.approx(np.mean(np.abs(y - p)))
    assert ev.mae([0.5, 0.8], [0.6, 0.5]) == pytest.approx(0.2)
    true, est = [0.1, 0.5, 0.3, 0.9], [0.2, 0.4, 0.35, 0.7]
    assert ev.spearman(true, est) == pytest.approx(spearmanr(true, est).statistic)
    assert np.isnan(ev.spearman([0.5], [0.5]))
    assert np.isnan(ev.spearman([0.1, 0.2], [0.3, 0.3]))


def test_atc_hand_computed_case():
    # source: 10 rows, 4 wrong (error 0.4); correct rows have LOW scores -> sign = -1
    score = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], dtype=float)
    y = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    atc = ev.ATC.fit(score[:, None], y)
    assert atc.sign[0] == -1.0
    # oriented scores -10..-1; 40% quantile (linear) = -10 + 0.4*9 = -6.4
    assert atc.threshold[0] == pytest.approx(-6.4)
    # fraction of source at or above the threshold = source accuracy
    assert atc.estimate(score[:, None])[0] == pytest.approx(0.6)
    target = np.array([2.0, 6.0, 7.0, 100.0])  # oriented -2, -6, -7, -100: two >= -6.4
    assert ev.atc_estimate(score, y, target) == pytest.approx(0.5)


def test_bootstrap_ci_is_seeded_and_covers_the_mean():
    p = np.random.default_rng(0).random(500)
    lo, hi = ev.bootstrap_ci(p, n_boot=2000, seed=7)
    assert (lo, hi) == ev.bootstrap_ci(p, n_boot=2000, seed=7)
    assert lo < p.mean() < hi
    # the percentile CI of a mean is close to +-1.96 standard errors
    se = p.std() / np.sqrt(p.size)
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)


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


def test_evaluate_slices_well_specified_estimator_is_accurate(table):
    cfg = {"classifier": "logistic_regression", "calibrate": True, "balance": False}
    per_slice, m = ev.evaluate_slices(table, ["easy", "hard"], "domain", cfg, seed=0)
    expected_cols = {
        "slice", "in_training", "n", "true_accuracy", "estimated_accuracy", "abs_error",
        "ci_low", "ci_high", "auroc", "brier", "atc_max_estimate", "atc_max_abs_error",
    }  # fmt: skip
    assert expected_cols <= set(per_slice.columns)
    assert len(per_slice) == 4
    n = per_slice.set_index("slice")["n"]
    assert n["easy"] == 120 and n["mid_easy"] == 600  # test split in training, all rows otherwise
    assert m["mae"] < 0.05 and m["spearman"] == pytest.approx(1.0)
    assert m["atc_max_mae"] < 0.06
    # the trivial baseline cannot follow the very different base rates
    assert m["train_accuracy_mae"] > 0.15
    assert set(m["atc_mae"]) >= {"max", "se_sum"}
    assert (per_slice["ci_low"] <= per_slice["estimated_accuracy"]).all()


def test_shuffled_labels_give_large_error(table):
    shuffled = table.copy()
    shuffled["correct"] = np.random.default_rng(0).permutation(shuffled["correct"].to_numpy())
    # labels no longer depend on the features, yet the evaluation uses the true labels
    est_cfg = {"classifier": "logistic_regression", "calibrate": True, "balance": False}
    from entropy_sentinel.estimators import estimator_from_config

    train = shuffled[shuffled["split"] == "train"]
    est = estimator_from_config(est_cfg).fit(train, train["correct"])
    true_acc, est_acc = [], []
    for _, g in table.groupby("domain"):
        true_acc.append(g["correct"].mean())
        est_acc.append(est.estimate_accuracy(g))
    assert ev.mae(true_acc, est_acc) > 0.15


def test_unknown_training_slice_is_an_error(table):
    with pytest.raises(ValueError, match="not in the data"):
        ev.evaluate_slices(table, ["nope"], "domain", {"classifier": "logistic_regression"})


def test_platt_confidence_baseline_is_calibrated(table):
    train = table[table["split"] == "train"]
    platt = ev.PlattConfidence("max").fit(train["max"], train["correct"])
    assert platt.predict_proba(train["max"]).mean() == pytest.approx(
        train["correct"].mean(), abs=0.01
    )


def test_summary_markdown_and_strict_json(table, tmp_path):
    import json

    from entropy_sentinel.provenance import write_json
    from entropy_sentinel.reports import summary_markdown

    cfg = {"classifier": "logistic_regression", "bootstrap": 50}
    per_slice, m = ev.evaluate_slices(table, ["easy", "hard"], "domain", cfg)
    md = summary_markdown({"toy-model": (per_slice, m)})
    assert "## toy-model" in md and "| mid_easy |" in md and "Spearman" in md
    m["nan_metric"] = float("nan")
    write_json(m, tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["nan_metric"] is None
