"""The ``entropy-sentinel`` CLI on synthetic traffic logs: score, monitor, inspect, refusals.

The logs are synthetic chat completions shaped like llama-server's (tests/traffic_logs.py);
tests/test_llama_server.py runs the same commands on a log written by a real server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from traffic_logs import synthetic_response, write_log

from entropy_sentinel.estimate.classifier import EntropySentinel
from entropy_sentinel.estimate.intervals import SliceInterval
from entropy_sentinel.features.compute import FEATURE_NAMES, FeatureSpec, response_features
from entropy_sentinel.serve.logs import LogFormat, TrafficError, read_log
from entropy_sentinel.serve.scoring import batch_features

CLI = Path(sys.executable).parent / "entropy-sentinel"
WRAPPED = ["--response-field", "response", "--slice-field", "tenant", "--time-field", "time"]


def run_cli(*args) -> subprocess.CompletedProcess:
    """The console script, as a user runs it."""
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True)


def fit_estimator(path: Path, *, k: int = 20, mode: str = "raw") -> Path:
    """A small estimator whose p(correct) falls with the mean entropy, saved as skops."""
    log = write_log(path.with_suffix(".train.jsonl"), 300, seed=11)
    features = batch_features(read_log(log, LogFormat(response_field="response"), k), FeatureSpec())
    rng = np.random.default_rng(0)
    correct = rng.random(len(features)) < 1 / (1 + np.exp(-(8 - 4 * features["mean"])))
    est = EntropySentinel("logistic_regression", calibrate=False, features="17D")
    est.fit(features, correct.astype(int), feature_spec=FeatureSpec(k=k, logprobs_mode=mode))
    est.interval_ = SliceInterval(1.64, 0.0005, 0.9, "conformal", 6, "slice").as_dict()
    est.save(path)
    return path


@pytest.fixture(scope="module")
def estimator(tmp_path_factory) -> Path:
    return fit_estimator(tmp_path_factory.mktemp("est") / "estimator.skops")


def in_process_slices(est_path: Path, log: Path) -> pd.Series:
    """Per-slice estimates computed one record at a time through features.py."""
    from entropy_sentinel.estimate.classifier import load_estimator

    est = load_estimator(est_path)
    rows, slices = [], []
    for line in log.read_text().splitlines():
        record = json.loads(line)
        content = record["response"]["choices"][0]["logprobs"]["content"]
        topk = [sorted(t["logprob"] for t in step["top_logprobs"])[::-1] for step in content]
        sampled = [step["logprob"] for step in content]
        rows.append(response_features(np.array(topk), np.array(sampled), est.feature_spec_))
        slices.append(record["tenant"])
    table = pd.DataFrame(rows, columns=list(FEATURE_NAMES)).assign(slice=slices)
    estimate = est.estimate(table[list(FEATURE_NAMES)], est.feature_spec_)
    table["r"] = est.row_estimates(table[list(FEATURE_NAMES)])
    assert est.estimate_from_rows(table["r"]).as_dict() == estimate.as_dict()
    return table.groupby("slice")["r"].mean()


def test_batched_features_equal_features_py(tmp_path):
    rng = np.random.default_rng(3)
    with open(tmp_path / "log.jsonl", "w") as out:
        for steps in (1, 1, 2, 3, 7, 30):
            out.write(json.dumps(synthetic_response(rng, steps)) + "\n")
        flat = synthetic_response(rng, 4)  # every step the same: std 0, skewness 0 by definition
        for step in flat["choices"][0]["logprobs"]["content"]:
            step.update(flat["choices"][0]["logprobs"]["content"][0])
        out.write(json.dumps(flat) + "\n")
    batch = read_log(tmp_path / "log.jsonl", LogFormat(), 20)
    for spec in (FeatureSpec(), FeatureSpec(entropy="topk_renormalised")):
        fast = batch_features(batch, spec)
        slow = [
            response_features(batch.topk[batch.steps(i)], batch.sampled[batch.steps(i)], spec)
            for i in range(len(batch))
        ]
        np.testing.assert_allclose(
            fast.to_numpy(), pd.DataFrame(slow)[list(FEATURE_NAMES)].to_numpy(), rtol=1e-12
        )


def test_score_matches_the_in_process_path(tmp_path, estimator):
    log = write_log(tmp_path / "traffic.jsonl", 120, seed=5)
    out = tmp_path / "scored"
    run = run_cli("score", log, "--estimator", estimator, *WRAPPED, "--logprobs-mode", "raw",
                  "--out", out)  # fmt: skip
    assert run.returncode == 0, run.stderr
    slices = pd.read_csv(out / "slices.csv").set_index("slice")
    expected = in_process_slices(estimator, log)
    np.testing.assert_allclose(slices.loc[["a", "b", "c"], "point"], expected, rtol=1e-12)
    assert (slices["low"] <= slices["point"]).all() and (slices["point"] <= slices["high"]).all()
    assert slices.loc["*", "n"] == 120 and "conformal" in slices.loc["*", "covers"]
    responses = pd.read_parquet(out / "responses.parquet")
    assert len(responses) == 120 and responses["p_correct"].between(0, 1).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["feature_spec"]["k"] == 20 and summary["estimator"]["sha256"]


def test_every_scored_response_keeps_its_id(tmp_path, estimator):
    """score and monitor write each response's id (the response's own, or --id-field's), so
    labels and alerts join back to records; an --id-field no record has is refused by name."""
    log = write_log(tmp_path / "traffic.jsonl", 40, seed=12)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    for i, record in enumerate(records):
        record["response"]["id"] = f"chatcmpl-{i}"
        record["meta"] = {"request": 1000 + i}
    records[3]["response"]["choices"][0]["logprobs"] = None  # skipped: its id is not written
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    expected = [f"chatcmpl-{i}" for i in range(40) if i != 3]
    common = ["--estimator", estimator, *WRAPPED, "--logprobs-mode", "raw"]
    run = run_cli("score", log, *common, "--out", tmp_path / "own")
    assert run.returncode == 0, run.stderr
    own = pd.read_parquet(tmp_path / "own" / "responses.parquet")
    assert own["id"].tolist() == expected and own["line"].tolist() == [
        i + 1 for i in range(40) if i != 3
    ]
    run = run_cli("score", log, *common, "--id-field", "meta.request", "--out", tmp_path / "f")
    assert run.returncode == 0, run.stderr
    ids = pd.read_parquet(tmp_path / "f" / "responses.parquet")["id"].tolist()
    assert ids == [str(1000 + i) for i in range(40) if i != 3]
    run = run_cli("monitor", log, *common, "--out", tmp_path / "monitor")
    assert run.returncode == 0, run.stderr
    monitored = pd.read_parquet(tmp_path / "monitor" / "responses.parquet")
    assert monitored["id"].tolist() == expected and monitored["window_start"].notna().all()
    run = run_cli("score", log, *common, "--id-field", "meta.req")
    assert run.returncode == 2 and "--id-field 'meta.req' is in no record" in run.stderr


def test_records_without_logprobs_are_counted_and_skipped(tmp_path, estimator):
    log = write_log(tmp_path / "traffic.jsonl", 30, seed=6)
    bare = json.loads(log.read_text().splitlines()[0])
    bare["response"]["choices"][0]["logprobs"] = None
    empty = json.loads(log.read_text().splitlines()[1])
    empty["response"]["choices"][0]["logprobs"]["content"] = []
    with open(log, "a") as out:
        out.write(json.dumps(bare) + "\n" + json.dumps(bare) + "\n" + json.dumps(empty) + "\n")
    run = run_cli("score", log, "--estimator", estimator, *WRAPPED, "--logprobs-mode", "raw")
    assert run.returncode == 0, run.stderr
    assert "skipped responses: 2 no logprobs, 1 no tokens" in run.stderr
    assert run.stdout.splitlines()[-2].split()[:2] == ["*", "30"]  # the 30 scored


@pytest.mark.parametrize(
    ("k_log", "mode", "message"),
    [
        (5, "raw", "traffic.jsonl:1: a token has 5 top log-probs, but the estimator was trained"),
        (20, "processed", "holds processed log-probs but the estimator was trained on raw"),
        (20, None, "declare it with --logprobs-mode"),
    ],
)
def test_inputs_that_cannot_be_scored_honestly_are_refused(
    tmp_path, estimator, k_log, mode, message
):
    log = write_log(tmp_path / "traffic.jsonl", 10, k=k_log)
    declared = ["--logprobs-mode", mode] if mode else []
    run = run_cli("score", log, "--estimator", estimator, *WRAPPED, *declared)
    assert run.returncode == 2
    assert message in run.stderr


def test_an_estimator_on_answer_features_scores_logs(tmp_path):
    """The answer-span features of a logged response (its text and finish reason) are those
    training computes from generation rows, and `score` runs an estimator that reads them."""
    from entropy_sentinel.features.compute import answer_features
    from entropy_sentinel.features.entropy import entropy_profile

    log = write_log(tmp_path / "train.jsonl", 60, seed=3)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    for i, record in enumerate(records):
        choice = record["response"]["choices"][0]
        steps = choice["logprobs"]["content"]
        choice["message"]["content"] = " ".join(s["token"] for s in steps) + (
            " so the answer is 42." if i % 3 else ""
        )
        choice["finish_reason"] = "length" if i % 4 == 0 else "stop"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    batch = read_log(log, LogFormat(response_field="response"), 20)
    features = batch_features(batch, FeatureSpec(), answer=True)
    for i in (0, 1, 2, 7):
        choice = records[i]["response"]["choices"][0]
        steps = choice["logprobs"]["content"]
        topk = np.array([[t["logprob"] for t in s["top_logprobs"]] for s in steps])
        sampled = np.array([s["logprob"] for s in steps])
        expected = answer_features(
            entropy_profile(topk, "topk"), sampled, choice["message"]["content"],
            choice["finish_reason"],
        )  # fmt: skip
        assert features.loc[i, list(expected)].to_dict() == pytest.approx(expected)
    assert features["answer_stated"].tolist() == [float(i % 3 > 0) for i in range(60)]
    assert features["truncated_flag"].tolist() == [float(i % 4 == 0) for i in range(60)]

    correct = features["answer_stated"].to_numpy() > 0
    est = EntropySentinel("logistic_regression", calibrate=False, features="3D+answer")
    est.fit(features, correct, feature_spec=FeatureSpec(k=20, logprobs_mode="raw"))
    est.save(tmp_path / "answer.skops")
    out = tmp_path / "scored"
    run = run_cli("score", log, "--estimator", tmp_path / "answer.skops", "--response-field",
                  "response", "--logprobs-mode", "raw", "--out", out)  # fmt: skip
    assert run.returncode == 0, run.stderr
    estimate = pd.read_csv(out / "slices.csv").set_index("slice").loc["*", "point"]
    assert estimate == pytest.approx(est.estimate(features).point)


def test_wider_logs_are_cut_to_the_estimators_k(tmp_path):
    wide = write_log(tmp_path / "wide.jsonl", 20, seed=8, k=20)
    narrow = tmp_path / "narrow.jsonl"
    with open(narrow, "w") as out:
        for line in wide.read_text().splitlines():
            record = json.loads(line)
            for step in record["response"]["choices"][0]["logprobs"]["content"]:
                step["top_logprobs"] = step["top_logprobs"][:5]
                np.random.default_rng(0).shuffle(step["top_logprobs"])  # order is not promised
            out.write(json.dumps(record) + "\n")
    fmt = LogFormat(response_field="response")
    a, b = read_log(wide, fmt, 5), read_log(narrow, fmt, 5)
    np.testing.assert_array_equal(a.topk, b.topk)
    np.testing.assert_array_equal(a.in_topk, b.in_topk)
    assert a.topk.shape[1] == 5 and (np.diff(a.topk, axis=1) <= 0).all()


def test_legacy_completions_and_generation_parquet(tmp_path):
    rng = np.random.default_rng(9)
    chat = [synthetic_response(rng, n, k=3) for n in (2, 5)]
    with open(tmp_path / "legacy.jsonl", "w") as out:
        for body in chat:
            content = body["choices"][0]["logprobs"]["content"]
            tops = [{t["token"]: t["logprob"] for t in s["top_logprobs"]} for s in content]
            legacy = {
                "tokens": [s["token"] for s in content],
                "token_logprobs": [s["logprob"] for s in content],
                "top_logprobs": tops,
            }
            body["choices"][0] = {"text": "x", "finish_reason": "length", "logprobs": legacy}
            out.write(json.dumps(body) + "\n")
    batch = read_log(tmp_path / "legacy.jsonl", LogFormat(), 3)
    assert list(batch.meta["n_tokens"]) == [2, 5] and batch.topk.shape == (7, 3)
    assert list(batch.meta["finish_reason"]) == ["length", "length"]

    rows = pd.DataFrame(
        {
            "item_id": ["x", "y", "z"],
            "domain": ["d1", "d2", "d1"],
            "topk_logprobs": [[[-0.1, -2.0], [-0.5, -1.0]], [[-0.2, -3.0]], None],
            "topk_token_ids": [[[1, 2], [3, 4]], [[5, 6]], None],
            "token_ids": [[1, 9], [5], None],
            "sampled_logprobs": [[-0.1, -4.0], [-0.2], None],
            "sampled_in_topk": [[True, False], [True], None],
            "finish_reason": ["stop", "stop", "error"],
            "error": [None, None, "boom"],
            "logprobs_mode": ["raw", "raw", None],
        }
    )
    rows.to_parquet(tmp_path / "gen.parquet")
    batch = read_log(tmp_path / "gen.parquet", LogFormat(slice_field="domain"), 2)
    assert list(batch.meta["slice"]) == ["d1", "d2"] and batch.logprobs_mode == "raw"
    assert batch.in_topk.tolist() == [True, False, True]
    assert batch.skipped == {"generation errors": 1, "no tokens": 0}
    cut = read_log(tmp_path / "gen.parquet", LogFormat(), 1)  # k=1: sampled_in_topk from ids
    assert cut.in_topk.tolist() == [True, False, True]
    with pytest.raises(TrafficError, match="declare|processed"):
        read_log(tmp_path / "gen.parquet", LogFormat(logprobs_mode="processed"), 2)


def test_monitor_alerts_on_a_drop(tmp_path, estimator):
    log = tmp_path / "traffic.jsonl"
    hour = 3600
    write_log(log, 120, seed=1, spacing_s=hour / 60)  # two calm hours
    write_log(log, 60, seed=2, start=1_767_225_600 + 2 * hour, spacing_s=hour / 60,
              spread=(0.2, 0.6), mode="a")  # fmt: skip
    out = tmp_path / "monitor"
    run = run_cli("monitor", log, "--estimator", estimator, *WRAPPED, "--logprobs-mode", "raw",
                  "--window", "hour", "--max-drop", "0.1", "--out", out)  # fmt: skip
    assert run.returncode == 3, run.stderr
    alerts = json.loads((out / "alerts.json").read_text())
    assert alerts and {a["alert"] for a in alerts} == {"drop_from_baseline"}
    assert {a["window_start"] for a in alerts} == {"2026-01-01T02:00:00+00:00"}
    assert {a["slice"] for a in alerts} == {"a", "b", "c", "*"}
    lines = [line for line in run.stderr.splitlines() if line.startswith("ALERT ")]
    assert [json.loads(line[6:]) for line in lines] == alerts
    windows = pd.read_csv(out / "windows.csv")
    assert len(windows) == 4 * 3 and set(windows["slice"]) == {"a", "b", "c", "*"}
    page = (out / "monitor.html").read_text()
    assert page.count("<svg") == 4 and "drop_from_baseline" in page

    calm = run_cli("monitor", log, "--estimator", estimator, *WRAPPED, "--logprobs-mode",
                   "raw", "--baseline", "2026-01-01T00:00/2026-01-01T02:00", "--max-drop",
                   "0.9", "--out", tmp_path / "calm")  # fmt: skip
    assert calm.returncode == 0, calm.stderr
    assert json.loads((tmp_path / "calm" / "alerts.json").read_text()) == []


def test_labels_fold_into_slices_and_windows(tmp_path, estimator):
    """score and monitor --labels: each slice (window) with 2+ labels gets PPI++ from them, the
    label-free estimate beside it; ids not in the log are counted, never fatal."""
    from entropy_sentinel.estimate.labels import slice_intervals

    log = write_log(tmp_path / "traffic.jsonl", 120, seed=3, spacing_s=60)
    scored = tmp_path / "scored"
    run = run_cli("score", log, "--estimator", estimator, *WRAPPED, "--logprobs-mode", "raw",
                  "--out", scored)  # fmt: skip
    assert run.returncode == 0, run.stderr
    responses = pd.read_parquet(scored / "responses.parquet")
    picked = responses.groupby("slice").head(6).query("slice != 'c'")  # c: no labels
    labels = pd.DataFrame({"id": picked["id"], "correct": np.arange(len(picked)) % 2})
    labels = pd.concat([labels, pd.DataFrame({"id": ["nowhere"], "correct": [1]})])
    labels.to_csv(tmp_path / "labels.csv", index=False)

    run = run_cli("score", log, "--estimator", estimator, *WRAPPED, "--logprobs-mode", "raw",
                  "--labels", tmp_path / "labels.csv", "--out", tmp_path / "labelled")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "skipped labels: 1 unknown id" in run.stderr
    slices = pd.read_csv(tmp_path / "labelled" / "slices.csv").set_index("slice")
    plain = pd.read_csv(scored / "slices.csv").set_index("slice")
    assert slices["n_labels"].to_dict() == {"a": 6, "b": 6, "c": 0, "*": 12}
    expected = slice_intervals(responses, labels.iloc[:-1], alpha=0.1).set_index("slice")
    for name in ("a", "b"):
        np.testing.assert_allclose(
            slices.loc[name, ["point", "low", "high"]].to_numpy(float),
            expected.loc[name, ["point", "low", "high"]].to_numpy(float),
        )
    bounds = ["point", "low", "high"]
    np.testing.assert_allclose(slices.loc["c", bounds].astype(float), plain.loc["c", bounds])
    np.testing.assert_allclose(slices["label_free_point"], plain["point"])

    out = tmp_path / "monitor"
    run = run_cli("monitor", log, "--estimator", estimator, *WRAPPED, "--logprobs-mode", "raw",
                  "--labels", tmp_path / "labels.csv", "--out", out)  # fmt: skip
    assert run.returncode == 0, run.stderr
    windows = pd.read_csv(out / "windows.csv")
    assert windows.groupby("slice")["n_labels"].sum().to_dict() == {"*": 12, "a": 6, "b": 6, "c": 0}
    labelled = windows[windows["n_labels"] >= 2]
    assert len(labelled) and labelled["method"].str.startswith("ppi++").all()
    assert windows.loc[windows["n_labels"] < 2, "method"].isna().all()


def test_inspect_says_what_the_estimator_expects(estimator):
    run = run_cli("inspect", estimator)
    assert run.returncode == 0, run.stderr
    assert "20 top log-probs per token" in run.stdout and "logprobs mode  raw" in run.stdout
    assert "logistic_regression" in run.stdout and "n_train=300" in run.stdout
    full = json.loads(run_cli("inspect", estimator, "--json").stdout)
    assert full["feature_spec"]["k"] == 20


def test_help_and_missing_estimator(tmp_path):
    assert run_cli("--help").returncode == 0
    run = run_cli("score", tmp_path / "x.jsonl", "--estimator", tmp_path / "none.skops")
    assert run.returncode == 2 and "no such estimator" in run.stderr


def test_train_from_the_command_line_on_a_study_folder(tmp_path):
    """`entropy-sentinel train` on the committed CPU study's features: every row trains, the
    interval is learnt across its benchmarks, and the estimator records what it was made from."""
    study = Path(__file__).resolve().parents[1] / "data/studies/cpu-qwen05b"
    out = tmp_path / "est.skops"
    run = run_cli(
        "train",
        study / "features.parquet",
        "--slice-field",
        "benchmark",
        "--out",
        out,
        "--set",
        "classifier=logistic_regression",
        "--set",
        "features=3D",
    )
    assert run.returncode == 0, run.stderr
    assert "trained on 300 rows of 10 slices" in run.stdout
    meta = run_cli("inspect", out, "--json")
    assert meta.returncode == 0, meta.stderr
    meta = json.loads(meta.stdout)
    assert meta["config"]["classifier"] == "logistic_regression"
    assert meta["feature_spec"]["k"] == 20 and meta["feature_spec"]["logprobs_mode"] == "raw"
    provenance = meta["provenance"]
    assert len(provenance["train_slices"]) == 10
    assert provenance["generation"]["settings"]["temperature"] == 0.5
    assert "training slice" in meta["interval"]["unit"]
    bad = run_cli("train", study / "features.parquet", "--out", out, "--set", "classifier=svm")
    assert bad.returncode == 2 and "estimator.classifier" in bad.stderr
    assert "Traceback" not in bad.stderr
