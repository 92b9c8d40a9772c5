"""Recalibration: labelled traffic of a new regime refits the readout, never the classifier.

The CLI test runs `entropy-sentinel recalibrate` and `score` on synthetic chat completions
shaped like llama-server's (tests/traffic_logs.py); the study smoke runs on the committed
testbed folders when they are present.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from traffic_logs import write_log

from entropy_sentinel.estimate.classifier import EntropySentinel, load_estimator
from entropy_sentinel.estimate.intervals import SliceInterval
from entropy_sentinel.estimate.regime import FeatureSupport, TrainingRegime
from entropy_sentinel.features.compute import FEATURE_SETS, FeatureSpec
from entropy_sentinel.serve.cli import main
from entropy_sentinel.serve.logs import LogFormat, read_log
from entropy_sentinel.serve.scoring import batch_features

CLI = Path(sys.executable).parent / "entropy-sentinel"
ROOT = Path(__file__).resolve().parents[1]
COLUMNS = list(FEATURE_SETS["3D"])
TRAINED = {"model": "m", "system_prompt_sha256": None, "temperature": 0.8, "top_p": 1.0,
           "top_k": None, "min_p": None, "max_tokens": 24.0, "top_logprobs": 20.0}  # fmt: skip


def rows(n: int, seed: int, shift: float = 0.0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Feature rows, labels whose odds fall with se_sum (``shift`` moves the accuracy at the
    same features: a new regime), and 4 slices."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)) * [1.0, 2.0, 3.0] + [2.0, 5.0, 8.0], columns=COLUMNS)
    odds = 1.5 * (5.0 - X["se_sum"]) + shift
    y = (rng.random(n) < 1 / (1 + np.exp(-odds))).astype(int)
    return X, y, np.array(["a", "b", "c", "d"])[np.arange(n) % 4]


def trained(slice_estimate: str = "atc") -> EntropySentinel:
    X, y, slices = rows(240, seed=0)
    est = EntropySentinel(features="3D", params={"C": 1.0}, slice_estimate=slice_estimate)
    est.fit(X, y, feature_spec=FeatureSpec(k=20, logprobs_mode="raw"))
    est.slice_map_ = (0.05, 0.9)
    est.interval_ = SliceInterval(1.64, 0.002, 0.9, "split-conformal", 8, "slice").as_dict()
    support = FeatureSupport.fit(X.to_numpy(), slices, COLUMNS, min_rows=10)
    est.regime_ = TrainingRegime(dict(TRAINED), support, "widen", 0.03)
    return est


@pytest.fixture(scope="module")
def atc_estimator() -> EntropySentinel:
    return trained("atc")


def test_recalibration_refits_the_readout_and_nothing_else(atc_estimator):
    est = atc_estimator
    X, y, slices = rows(160, seed=1, shift=-2.5)  # the new regime: far fewer correct
    probe, _, _ = rows(50, seed=2)
    threshold = est.threshold_
    models = [m.predict_proba(probe.to_numpy()) for m in est.fold_models_]
    settings = {**TRAINED, "temperature": 0.2}
    new = est.recalibrate(X[slices != "d"], y[slices != "d"], slices[slices != "d"],
                          settings=settings, provenance={"labels": {"l.csv": "abc"}})  # fmt: skip

    np.testing.assert_array_equal(new.p_correct(probe), est.p_correct(probe))
    for model, before in zip(new.fold_models_, models, strict=True):
        np.testing.assert_array_equal(model.predict_proba(probe.to_numpy()), before)
    np.testing.assert_array_equal(new.fold_scores(probe), est.fold_scores(probe))
    assert est.threshold_ == threshold and new.threshold_ != threshold  # a copy was changed
    labelled = X[slices != "d"]
    accuracy = y[slices != "d"].mean()
    assert new.estimate(labelled).point == pytest.approx(accuracy, abs=1e-12)
    assert abs(est.estimate(labelled).point - accuracy) > 0.1  # it was off before
    held = slices == "d"  # a slice without labels moves toward its truth
    assert abs(new.estimate(X[held]).point - y[held].mean()) < abs(
        est.estimate(X[held]).point - y[held].mean()
    )
    assert new.interval_ == est.interval_ and new.regime_.support is not est.regime_.support
    np.testing.assert_array_equal(new.regime_.support.reference, est.regime_.support.reference)
    assert new.regime_.settings == settings and est.regime_.settings == TRAINED
    record = new.provenance_["recalibrated"]
    assert record["n_rows"] == 120 and record["slices"] == ["a", "b", "c"]
    assert record["labels"] == {"l.csv": "abc"} and record["training_settings"] == TRAINED
    assert record["readout_before"]["atc_threshold"]["t"] == threshold.t
    assert new.provenance_["n_train"] == est.provenance_["n_train"] == 240


@pytest.mark.parametrize("readout", ["calibrated", "mean"])
def test_the_line_readouts_refit_their_intercept(readout):
    est = trained(readout)
    X, y, slices = rows(120, seed=3, shift=-2.0)
    new = est.recalibrate(X, y, slices)
    assert new.slice_estimate == "calibrated"  # a recalibrated mean reads out through the line
    assert new.slice_map_[1] == (0.9 if readout == "calibrated" else 1.0)
    assert new.estimate(X).point == pytest.approx(y.mean(), abs=1e-12)
    np.testing.assert_array_equal(new.p_correct(X), est.p_correct(X))
    assert new.regime_.settings is None  # the new regime's settings were not given


def test_labels_of_one_class_or_not_0_1_are_refused(atc_estimator):
    X, y, _ = rows(20, seed=4)
    with pytest.raises(ValueError, match="all 20 labelled rows are wrong"):
        atc_estimator.recalibrate(X, np.zeros(20, int))
    with pytest.raises(ValueError, match="must be 1 .correct. or 0"):
        atc_estimator.recalibrate(X, np.where(y == 1, 1.0, np.nan))
    with pytest.raises(ValueError, match="20 rows but 19 labels"):
        atc_estimator.recalibrate(X, y[:19])


def test_a_recalibrated_estimator_saves_and_loads(tmp_path, atc_estimator):
    X, y, slices = rows(100, seed=5, shift=1.5)
    new = atc_estimator.recalibrate(X, y, slices, settings={**TRAINED, "top_p": 0.9})
    loaded = load_estimator(new.save(tmp_path / "new.skops"))
    assert loaded.threshold_ == new.threshold_ and loaded.slice_estimate == "atc"
    np.testing.assert_array_equal(loaded.row_estimates(X), new.row_estimates(X))
    assert loaded.estimate(X).as_dict() == new.estimate(X).as_dict()
    assert loaded.regime_.settings["top_p"] == 0.9
    assert loaded.provenance_["recalibrated"]["n_rows"] == 100
    line = trained("mean").recalibrate(X, y, slices)
    again = load_estimator(line.save(tmp_path / "line.skops"))
    assert again.slice_estimate == "calibrated" and again.slice_map_ == line.slice_map_


def _with_requests(path: Path, body: dict, tag: str) -> Path:
    """A log of write_log's records, each with its own id and a logged request ``body``."""
    lines = path.read_text().splitlines()
    records = [{**json.loads(x), "id": f"{tag}{i}", "request": body} for i, x in enumerate(lines)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_recalibrate_from_a_log_and_labels_on_the_command_line(tmp_path, capsys):
    fmt = ["--response-field", "response", "--slice-field", "tenant", "--id-field", "id",
           "--request-field", "request", "--logprobs-mode", "raw"]  # fmt: skip
    chat = {"model": "m", "temperature": 0.8, "top_p": 1.0, "max_tokens": 24, "top_logprobs": 20,
            "messages": [{"role": "user", "content": "q"}]}  # fmt: skip
    train = _with_requests(write_log(tmp_path / "train.jsonl", 200, seed=11), chat, "t")
    features = batch_features(read_log(train, LogFormat(response_field="response"), 20),
                              FeatureSpec(), answer=True)  # fmt: skip
    rng = np.random.default_rng(0)
    y = (rng.random(len(features)) < 1 / (1 + np.exp(-(8 - 4 * features["mean"])))).astype(int)
    est = EntropySentinel(features="3D", params={"C": 1.0})
    est.fit(features, y, feature_spec=FeatureSpec(k=20, logprobs_mode="raw"))
    est.interval_ = SliceInterval(1.64, 0.002, 0.9, "split-conformal", 8, "slice").as_dict()
    tenants = np.array(["a", "b", "c"])[np.arange(len(y)) % 3]
    support = FeatureSupport.fit(features[COLUMNS].to_numpy(), tenants, COLUMNS, min_rows=10)
    settings = {"model": "m", "system_prompt_sha256": None, "temperature": 0.8, "top_p": 1.0,
                "top_k": None, "min_p": None, "max_tokens": 24.0, "top_logprobs": 20.0}  # fmt: skip
    est.regime_ = TrainingRegime(settings, support)
    est_path = est.save(tmp_path / "est.skops")

    other = {**chat, "temperature": 0.3, "messages": [{"role": "system", "content": "Be brief."}]}
    log = _with_requests(write_log(tmp_path / "new.jsonl", 150, seed=5), other, "n")
    batch = read_log(log, LogFormat(response_field="response", slice_field="tenant"), 20)
    new_features = batch_features(batch, FeatureSpec(), answer=True)
    truth = (rng.random(len(batch)) < 1 / (1 + np.exp(-(6 - 4 * new_features["mean"])))).astype(
        int
    )  # the new regime: fewer correct at the same entropy
    ids = [f"n{i}" for i in range(len(batch))]
    labelled = batch.meta["slice"].isin(["a", "b"]).to_numpy()
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"id": ids, "correct": np.where(labelled, truth, np.nan)}).to_csv(labels)
    out = tmp_path / "new.skops"
    run = subprocess.run([CLI, "recalibrate", log, "--estimator", est_path, "--labels", labels,
                          *fmt, "--out", out], capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"recalibrated on {labelled.sum()} labelled rows of 2 slices" in run.stdout
    assert "temperature=0.3" in run.stdout and "the classifier is unchanged" in run.stdout
    new = load_estimator(out)
    rows_ = new_features[labelled]
    assert new.estimate(rows_).point == pytest.approx(truth[labelled].mean(), abs=1e-12)
    np.testing.assert_array_equal(new.p_correct(new_features), est.p_correct(new_features))
    record = new.provenance_["recalibrated"]
    assert record["slices"] == ["a", "b"] and str(labels) in record["labels"]
    assert str(est_path) in record["estimator"] and record["settings"]["temperature"] == 0.3

    def regimes(estimator: Path) -> set[str]:
        scored = tmp_path / f"scored-{estimator.stem}"
        run = subprocess.run([CLI, "score", log, "--estimator", estimator, *fmt, "--out", scored],
                             capture_output=True, text=True)  # fmt: skip
        assert run.returncode == 0, run.stderr
        summary = json.loads((scored / "summary.json").read_text())
        return {s["settings"] for s in summary["regime"]["slices"].values()}

    assert regimes(est_path) == {"shifted"} and regimes(out) == {"same"}

    assert main(["inspect", str(out)]) == 0
    shown = capsys.readouterr().out
    assert f"recalibrated   on {labelled.sum()} labelled rows of a, b" in shown

    refused = {
        "pass --labels": ["--estimator", est_path, *fmt, "--out", out],
        "both classes": ["--estimator", est_path, "--labels", tmp_path / "wrong.csv", *fmt,
                         "--out", out],
        "name a .skops file": ["--estimator", est_path, "--labels", labels, *fmt, "--out",
                               tmp_path / "x.json"],
    }  # fmt: skip
    pd.DataFrame({"id": ids[:30], "correct": 0}).to_csv(tmp_path / "wrong.csv", index=False)
    for message, args in refused.items():  # in process: the same main, no start-up to wait
        assert main(["recalibrate", str(log), *map(str, args)]) == 2
        assert message in capsys.readouterr().err


def test_study_recalibrate_smoke(tmp_path):
    """`study recalibrate` on three slices of the committed testbed and its traffic regime."""
    from entropy_sentinel.evaluate.study import main as study_main

    folders = {}
    for name in ("testbed-qwen05b", "testbed-traffic"):
        study = ROOT / "data/studies" / name
        if not (study / "features.parquet").is_file():
            pytest.skip(f"{study} is not here")
        folders[name] = tmp_path / name
        folders[name].mkdir()
        for file in ("features.parquet", "provenance.json"):
            shutil.copyfile(study / file, folders[name] / file)
    only = ["gsm8k", "svamp_addition", "word_two_step"]
    study_main(["recalibrate", str(folders["testbed-qwen05b"]), str(folders["testbed-traffic"]),
          "--sizes", "1", "--only", *only, "--set", "features=3D",
          "--set", "classifier=logistic_regression", "--jobs", "1"])  # fmt: skip
    stem = folders["testbed-traffic"] / "recalibrate-from-testbed-qwen05b"
    table = pd.read_csv(stem.with_suffix(".csv"))
    long = pd.read_csv(stem.parent / f"{stem.name}-slices.csv")
    design = json.loads(stem.with_suffix(".json").read_text())
    assert set(table["labels"]) <= {"all", "20 per slice"} and (table["m"] == 1).all()
    for row in table.itertuples():  # 3 choices of 1 labelled slice, 2 other slices each
        assert row.estimates == 2 * (3 - row.skipped)
    assert not (long["labelled"] == long["slice"]).any()
    truth = pd.read_parquet(folders["testbed-traffic"] / "features.parquet")
    truth = truth[truth["benchmark"].isin(only)].groupby("benchmark")["correct"].mean()
    np.testing.assert_allclose(long["true"], truth[long["slice"]].to_numpy())
    mine = long[long["labels"] == "all"]
    accuracy = mine["labelled"].map(truth)
    np.testing.assert_allclose(mine["labelled_accuracy"], accuracy)
    assert design["protocol"]["only"] == only and len(design["label_free"]) == 3
