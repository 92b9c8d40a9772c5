"""Tests of the sweep: the config grid, chunking, resumability, metrics and deployments."""

import numpy as np
import pandas as pd
import pytest

from entropy_sentinel.estimate.classifier import load_estimator
from entropy_sentinel.evaluate import sweep as sw
from entropy_sentinel.features.simulate import synthetic_features

SLICES = {"b0": -1.5, "b1": -0.5, "b2": 0.5, "b3": 1.5}
FAST = {
    "classifiers": ["logistic_regression"],
    "calibrate": [True, False],
    "balance": [False],
    "feature_sets": ["3D"],
    "max_train_slices": 2,
}


@pytest.fixture(scope="module")
def table():
    return synthetic_features(SLICES, n_per_slice=1000, seed=5, slice_by="benchmark")


@pytest.fixture(scope="module")
def data(table):
    return sw.SweepData.from_frame(table, "benchmark")


@pytest.fixture(scope="module")
def small_table():
    return synthetic_features(SLICES, n_per_slice=300, seed=6, slice_by="benchmark")


@pytest.fixture(scope="module")
def small(small_table):
    return sw.SweepData.from_frame(small_table, "benchmark")


@pytest.fixture(scope="module")
def fast_results(small):
    """Every FAST config of the small table, evaluated (one row per config)."""
    configs = sw.sweep_configs("m", small.slices, FAST)
    return pd.DataFrame([r for g in sw.fit_groups(configs) for r in sw.run_group(small, g)])


def test_composition_count_matches_the_paper():
    names = [f"s{i}" for i in range(10)]
    assert sw.n_compositions(10, 4) == 385 == len(sw.compositions(names, 4))
    configs = sw.sweep_configs("m", names, {})
    assert len(configs) == 385 * 48
    assert len({c.hash for c in configs}) == len(configs)
    assert sw.n_compositions(3, 4) == 7  # k is capped by the number of slices


@pytest.mark.parametrize("n_chunks", [1, 3, 8, 50])
def test_chunks_cover_every_config_exactly_once(n_chunks):
    configs = sw.sweep_configs("m", [f"s{i}" for i in range(6)], {"max_train_slices": 2})
    chunks = [sw.chunk_configs(configs, i, n_chunks) for i in range(n_chunks)]
    assert [c for ch in chunks for c in ch] == configs
    # a fit group (calibrated + uncalibrated) never straddles two chunks
    for ch in chunks:
        if ch:
            assert sum(len(g) for g in sw.fit_groups(ch)) == len(ch)
            assert all(len(g) == 2 for g in sw.fit_groups(ch))
    assert chunks == [sw.chunk_configs(configs, i, n_chunks) for i in range(n_chunks)]


def test_resume_skips_done_configs(small, tmp_path):
    data = small
    configs = sw.sweep_configs("m", data.slices, {**FAST, "max_train_slices": 1})
    parts = tmp_path / "chunk_0.parts"
    assert sw.run_chunk(data, configs, parts, batch_groups=2) == len(configs)
    assert sw.run_chunk(data, configs, parts) == 0  # everything done
    first = sorted(parts.glob("part-*.parquet"))[0]
    n_first = len(pd.read_parquet(first))
    first.unlink()  # as if interrupted before this batch was flushed
    assert sw.run_chunk(data, configs, parts) == n_first
    out = sw.collect_parts(parts, tmp_path / "chunk_0.parquet")
    assert sorted(out["hash"]) == sorted(c.hash for c in configs)


def test_well_specified_estimator_has_near_zero_mae(data, table):
    group = [
        sw.SweepConfig("m", ("b0", "b3"), "logistic_regression", cal, False, "3D")
        for cal in (False, True)
    ]
    rows = sw.run_group(data, group)
    assert all(r["status"] == "ok" for r in rows)
    assert rows[0]["mae"] < 0.03 and rows[0]["spearman_rho"] == pytest.approx(1.0)
    assert rows[0]["atc_max_mae"] < 0.05 and rows[0]["trivial_mae"] > 0.15
    # per-slice AEE columns agree with the MAE
    aee = [rows[0][f"aee:{s}"] for s in data.slices]
    assert np.mean(aee) == pytest.approx(rows[0]["mae"])

    shuffled = table.copy()
    shuffled["correct"] = np.random.default_rng(0).permutation(shuffled["correct"].to_numpy())
    noisy = sw.SweepData.from_frame(shuffled, "benchmark")
    # train on shuffled labels, score against the true ones
    noisy.y = noisy.y.copy()
    noisy.y[~noisy.is_train] = data.y[~data.is_train]
    bad = sw.run_group(noisy, group)
    assert bad[0]["mae"] > 0.15


def test_merge_tables(small, fast_results):
    configs = sw.sweep_configs("m", small.slices, FAST)
    tables = sw.merge_tables(fast_results)
    assert list(tables["results"].columns) == sw.RESULT_COLUMNS
    assert len(tables["results"]) == len(configs) == sw.n_compositions(4, 2) * 2
    assert set(tables["mae_vs_k"]["k"]) == {1, 2}
    assert len(tables["aee_per_slice"]) == len(configs) * 4
    assert len(tables["atc_mae"]) == sw.n_compositions(4, 2)
    assert set(tables["rq4_ablation"]["factor"]) >= {"classifier", "features"}
    assert len(tables["best_worst"]) == 2


def test_nested_design_never_sees_the_slices_it_is_scored_on(fast_results):
    results = fast_results
    chosen = sw.nested_design(results, "m", ["b0", "b1"])
    assert "leave-one-training-slice-out" in chosen["selection"]
    # making the chosen design terrible on slices outside the training ones changes nothing
    worse = results.copy()
    is_chosen = worse["calibrate"] == chosen["calibrate"]
    worse.loc[is_chosen, ["aee:b2", "aee:b3", "mae"]] = 1.0
    assert sw.nested_design(worse, "m", ["b0", "b1"]) == chosen
    # making it terrible on a held-out *training* slice moves the choice
    worse = results.copy()
    worse.loc[is_chosen & (worse["benchmarks"] == "b0"), "aee:b1"] = 1.0
    assert sw.nested_design(worse, "m", ["b0", "b1"])["calibrate"] != chosen["calibrate"]
    assert sw.nested_design(results, "m", ["b0"]) is None  # nothing to nest with one slice


def test_too_few_minority_rows_are_skipped(table):
    t = table.copy()
    t.loc[t["benchmark"] == "b0", "correct"] = True
    data = sw.SweepData.from_frame(t, "benchmark")
    group = [sw.SweepConfig("m", ("b0",), "logistic_regression", True, False, "1D")]
    assert sw.run_group(data, group)[0]["status"] == "skipped_minority_lt_2"


def test_deployments_skip_missing_slices_and_save_loadable_estimators(
    fast_results, small_table, tmp_path
):
    cfg = {
        "slice_by": "benchmark",
        "classifier": "logistic_regression",
        "calibrate": True,
        "balance": False,
        "features": "17D",
        "calibration": "sigmoid",
        "slice_estimate": "atc",
        "seed": 0,
        "interval_level": 0.9,
        "interval_units": 4,  # a few leave-one-out refits of the forest keep this quick
    }
    rows = small_table.groupby("benchmark").head(100)  # the paper design is a forest: keep it small
    manifest = sw.train_deployments(
        rows,
        "m",
        {"extremes": ["b0", "b3"], "intermediate": ["gsm8k", "b1"]},
        cfg,
        tmp_path,
        results=fast_results,
    )
    assert "gsm8k" in manifest["skipped"]["intermediate"]
    assert "held out" in manifest["errors_on"]
    paper, selected = (
        manifest["estimators"]["extremes"],
        manifest["estimators"]["extremes-selected"],
    )
    assert "leave-one-training-slice-out" in selected["selection"]
    est = load_estimator(paper["path"])
    assert est.provenance_["train_slices"] == ["b0", "b3"]
    assert tuple(est.feature_names_in_) == tuple(sw.FEATURE_SETS["10D"])
    assert est.predict_proba(rows.head(5)).shape == (5, 2)
    assert est.estimate(rows.head(50)).high <= 1.0
    assert selected["mae_held_out"] < 0.2


def test_successive_halving_is_opt_in_and_hashed_apart(data):
    grid = sw.sweep_configs("m", data.slices, {"max_train_slices": 1, "classifiers": ["mlp"]})
    halving = sw.sweep_configs(
        "m", data.slices, {"max_train_slices": 1, "classifiers": ["mlp"], "search": "halving"}
    )
    assert {c.search for c in grid} == {"grid"} and {c.search for c in halving} == {"halving"}
    assert not {c.hash for c in grid} & {c.hash for c in halving}  # never resumed into each other
    plain = sw.SweepConfig("m", ("b0",), "random_forest", True, False, "3D")
    assert plain.hash == "8ad69f30d388"  # the grid's hashes are those of earlier sweeps
    group = [c for c in halving if c.slices == ("b0", "b3") or c.slices == ("b1",)][:2]
    rows = sw.run_group(data, group)
    assert [r["status"] for r in rows] == ["ok", "ok"] and rows[0]["mae"] < 0.1
    assert rows[0]["best_params"] == rows[1]["best_params"]  # one search for both
