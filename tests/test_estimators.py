"""Tests of the EntropySentinel classifier on synthetic feature tables with a known p(correct)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import check_estimator

from entropy_sentinel.config.loading import validate_section
from entropy_sentinel.estimate.classifier import (
    EntropySentinel,
    FeatureSpecMismatch,
    TooFewSamplesError,
    load_estimator,
)
from entropy_sentinel.features.compute import FEATURE_NAMES, FEATURE_SETS, FeatureSpec
from entropy_sentinel.features.simulate import synthetic_features, true_probability


@pytest.fixture(scope="module")
def table():
    return synthetic_features({"a": -1.0, "b": 0.0, "c": 1.0}, n_per_slice=300, seed=1)


@pytest.mark.parametrize("classifier", ["random_forest", "logistic_regression", "mlp"])
def test_fit_predict_and_round_trip(table, tmp_path, classifier):
    est = EntropySentinel(classifier, calibrate=True, balance=True, features="3D")
    est.fit(table, table["correct"], provenance={"train_slices": ["a", "b", "c"]})
    proba = est.predict_proba(table)
    assert proba.shape == (len(table), 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert est.p_correct(table).mean() == pytest.approx(proba[:, 1].mean())
    path = est.save(tmp_path / "es.skops")
    loaded = load_estimator(path)
    np.testing.assert_array_equal(loaded.predict_proba(table), proba)
    assert tuple(loaded.feature_names_in_) == FEATURE_SETS["3D"]
    assert loaded.provenance_["train_slices"] == ["a", "b", "c"]
    assert loaded.provenance_["n_train"] == len(table)
    assert (tmp_path / "es.skops.json").exists()
    assert not (tmp_path / "es.skops.tmp").exists()


@pytest.mark.parametrize("classifier", ["random_forest", "logistic_regression", "mlp"])
def test_balanced_calibrated_mean_p_is_unbiased_on_imbalanced_data(classifier):
    """Base rate 0.1, i.i.d.: oversampling or class weights must not leak into the calibrated
    p, so its mean on fresh rows stays within 0.02 of the true accuracy (and ATC's share, the
    default estimate, within 0.04)."""
    rng = np.random.default_rng(0)
    n = 4000
    X = pd.DataFrame(rng.normal(size=(n, 17)), columns=list(FEATURE_NAMES))
    logit = -2.6 + 1.2 * X["max"] - 0.8 * X["se_sum"]
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    assert 0.08 < y.mean() < 0.13
    train, test = slice(0, 2000), slice(2000, n)
    est = EntropySentinel(classifier, calibrate=True, balance=True, features="17D")
    est.fit(X.iloc[train], y[train])
    truth = (1 / (1 + np.exp(-logit.iloc[test]))).mean()
    assert abs(est.p_correct(X.iloc[test]).mean() - truth) < 0.02
    # ATC's share counts rows beyond a threshold fitted on 2000 rows: noisier than mean p
    assert abs(est.estimate(X.iloc[test]).point - truth) < 0.04


def test_estimator_checks_pass():
    # logistic regression keeps this fast; the other classifiers share every line of the
    # wrapper (only the base model differs) and are exercised by the tests above
    check_estimator(EntropySentinel("logistic_regression", features=None))


def test_defaults_are_the_schemas():
    """sklearn wants constructor defaults; they must be the config schema's, the one source."""
    schema = validate_section("estimator", {"slice_by": "benchmark", "train_slices": ["x"]})
    for name, default in EntropySentinel().get_params().items():
        if name != "params":
            assert schema[name] == default, name


def test_clone_and_params_follow_the_sklearn_contract(table):
    est = EntropySentinel("logistic_regression", calibrate=False, features="1D")
    copy = clone(est)
    assert copy.get_params() == est.get_params() and not hasattr(copy, "model_")
    fitted = est.fit(table, table["correct"])
    assert list(fitted.classes_) == [False, True]
    assert set(fitted.predict(table)) <= {False, True}


def test_selects_columns_by_name(table):
    est = EntropySentinel("logistic_regression", features="1D").fit(table, table["correct"])
    shuffled = table[list(reversed(table.columns))]
    np.testing.assert_array_equal(est.predict_proba(shuffled), est.predict_proba(table))
    with pytest.raises(KeyError):
        est.predict_proba(table.drop(columns=["se_sum"]))


def test_calibrated_estimate_tracks_true_accuracy(table):
    est = EntropySentinel("logistic_regression", calibrate=True, balance=False, features="17D")
    train = table[table["split"] == "train"]
    est.fit(train, train["correct"])
    for _, g in table[table["split"] == "test"].groupby("domain"):
        assert abs(est.p_correct(g).mean() - true_probability(g["max"]).mean()) < 0.05


def test_too_few_minority_rows_raise(table):
    y = np.zeros(len(table), dtype=bool)
    y[0] = True
    with pytest.raises(TooFewSamplesError):
        EntropySentinel("logistic_regression", features="3D").fit(table, y)


def test_scoring_rows_with_another_feature_spec_raises(table, tmp_path):
    spec = FeatureSpec(definitions="standard", entropy="topk", k=20, logprobs_mode="raw")
    est = EntropySentinel("logistic_regression", features="3D")
    est.fit(table, table["correct"], feature_spec=spec)
    est.save(tmp_path / "e.skops")
    loaded = load_estimator(tmp_path / "e.skops")
    assert loaded.feature_spec_ == spec
    loaded.estimate(table, spec)  # same spec: fine
    for other, word in (
        (FeatureSpec(definitions="paper", k=20, logprobs_mode="raw"), "definitions"),
        (FeatureSpec(entropy="full", k=20, logprobs_mode="raw"), "entropy"),
        (FeatureSpec(k=5, logprobs_mode="raw"), "k"),
        (FeatureSpec(k=20, logprobs_mode="processed"), "logprobs_mode"),
    ):
        with pytest.raises(FeatureSpecMismatch, match=word):
            loaded.estimate(table, other)


def test_corrupt_file_names_the_path_and_the_fix(table, tmp_path):
    path = EntropySentinel("logistic_regression", features="1D").fit(table, table["correct"])
    path = path.save(tmp_path / "e.skops")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"e\.skops.*truncated or corrupt.*forcerun"):
        load_estimator(path)


def test_failed_save_leaves_no_temporary(table, tmp_path, monkeypatch):
    import skops.io as sio

    est = EntropySentinel("logistic_regression", features="1D").fit(table, table["correct"])

    def full_disk(obj, file):
        Path(file).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sio, "dump", full_disk)  # a full disk cannot be made here
    with pytest.raises(OSError):
        est.save(tmp_path / "e.skops")
    assert list(tmp_path.iterdir()) == []


def test_load_refuses_unknown_types(tmp_path):
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    sio.dump({"model": FunctionTransformer(func=json.dumps)}, tmp_path / "x.skops")
    with pytest.raises(ValueError, match="allow-list"):
        load_estimator(tmp_path / "x.skops")
    sio.dump({"model": 1}, tmp_path / "y.skops")
    with pytest.raises(ValueError, match="not a saved"):
        load_estimator(tmp_path / "y.skops")


def test_unknown_names_rejected():
    base = {"classifier": "logistic_regression", "calibrate": True, "balance": True}
    base |= {"features": "3D", "calibration": "sigmoid", "seed": 0, "slice_estimate": "atc"}
    with pytest.raises(ValueError):
        EntropySentinel.from_config({**base, "classifier": "svm"})
    with pytest.raises(ValueError):
        EntropySentinel.from_config({**base, "features": "5D"})
    assert EntropySentinel("neural_network").config()["classifier"] == "mlp"


def test_one_class_training_falls_back_to_the_prior_only_when_allowed(tmp_path):
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(20, 17)), columns=list(FEATURE_NAMES))
    y = np.zeros(20, dtype=bool)
    with pytest.raises(TooFewSamplesError):
        EntropySentinel("random_forest", True, True, "17D").fit(X, y)
    est = EntropySentinel("random_forest", True, True, "17D").fit(X, y, allow_degenerate=True)
    assert "minority class" in est.degenerate_
    assert np.all(est.p_correct(X) == 0.0)
    est.save(tmp_path / "e.skops")
    assert np.all(load_estimator(tmp_path / "e.skops").p_correct(X) == 0.0)
