"""Tests of the estimator API on synthetic feature tables with a known p(correct)."""

import json

import numpy as np
import pytest

from entropy_sentinel.estimators import (
    TooFewSamplesError,
    load_estimator,
    make_estimator,
    oversample,
)
from entropy_sentinel.features import FEATURE_SETS
from entropy_sentinel.simulate import synthetic_features, true_probability


@pytest.fixture(scope="module")
def table():
    return synthetic_features({"a": -1.0, "b": 0.0, "c": 1.0}, n_per_slice=300, seed=1)


@pytest.mark.parametrize("classifier", ["random_forest", "logistic_regression", "mlp"])
def test_fit_predict_and_round_trip(table, tmp_path, classifier):
    est = make_estimator(classifier, calibrate=True, balance=True, features="3D")
    est.fit(table, table["correct"], provenance={"train_slices": ["a", "b", "c"]})
    p = est.predict_proba(table)
    assert p.shape == (len(table),) and np.all((p >= 0) & (p <= 1))
    assert est.estimate_accuracy(table) == pytest.approx(p.mean())
    path = est.save(tmp_path / "es.skops")
    loaded = load_estimator(path)
    np.testing.assert_array_equal(loaded.predict_proba(table), p)
    assert loaded.feature_names_ == FEATURE_SETS["3D"]
    assert loaded.provenance_["train_slices"] == ["a", "b", "c"]
    assert loaded.provenance_["n_train"] == len(table)
    assert "sklearn_version" in loaded.provenance_
    assert (tmp_path / "es.skops.json").exists()


def test_selects_columns_by_name(table):
    est = make_estimator("logistic_regression", features="1D").fit(table, table["correct"])
    shuffled = table[list(reversed(table.columns))]
    np.testing.assert_array_equal(est.predict_proba(shuffled), est.predict_proba(table))
    with pytest.raises(KeyError):
        est.predict_proba(table.drop(columns=["se_sum"]))


def test_calibrated_estimate_tracks_true_accuracy(table):
    est = make_estimator("logistic_regression", calibrate=True, balance=False, features="17D")
    train = table[table["split"] == "train"]
    est.fit(train, train["correct"])
    for _, g in table[table["split"] == "test"].groupby("domain"):
        assert abs(est.estimate_accuracy(g) - true_probability(g["max"]).mean()) < 0.05


def test_too_few_minority_rows_raise(table):
    y = np.zeros(len(table), dtype=bool)
    y[0] = True
    with pytest.raises(TooFewSamplesError):
        make_estimator("logistic_regression").fit(table, y)


def test_oversample_balances_classes():
    X = np.arange(10, dtype=float)[:, None]
    y = np.array([1] * 8 + [0] * 2)
    Xo, yo = oversample(X, y, seed=0)
    assert (yo == 0).sum() == (yo == 1).sum() == 8
    assert set(Xo[yo == 0, 0]) <= {8.0, 9.0}


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
    with pytest.raises(ValueError):
        make_estimator("svm")
    with pytest.raises(ValueError):
        make_estimator(features="5D")
    assert make_estimator("neural_network").classifier == "mlp"


def test_one_class_training_falls_back_to_the_prior_only_when_allowed(tmp_path):
    import numpy as np
    import pandas as pd

    from entropy_sentinel.estimators import TooFewSamplesError, load_estimator, make_estimator
    from entropy_sentinel.features import FEATURE_NAMES

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(20, 17)), columns=list(FEATURE_NAMES))
    y = np.zeros(20, dtype=bool)
    with pytest.raises(TooFewSamplesError):
        make_estimator("random_forest", True, True, "17D").fit(X, y)
    est = make_estimator("random_forest", True, True, "17D").fit(X, y, allow_degenerate=True)
    assert "minority class" in est.provenance_["degenerate"]
    assert np.all(est.predict_proba(X) == 0.0)
    est.save(tmp_path / "e.skops")
    assert np.all(load_estimator(tmp_path / "e.skops").predict_proba(X) == 0.0)
