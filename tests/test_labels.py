"""A few labels per slice: PPI++ against the reference package, its coverage and width, the
per-slice intervals, the labelling CSV and `entropy-sentinel label`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from entropy_sentinel.estimate.labels import (
    labels_only_interval,
    ppi_mean_interval,
    slice_intervals,
)


def _draw(rng, n, big_n, quality, accuracy=0.4):
    """Labels with predictions whose agreement with them grows with ``quality`` (0: noise)."""
    y = (rng.random(n + big_n) < accuracy).astype(float)
    p = np.clip(quality * y + (1 - quality) * rng.random(n + big_n), 0, 1)
    return y[:n], p[:n], p[n:], y


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("lam", [None, 0.0, 0.5, 1.0])
def test_ppi_equals_the_reference_package(seed, lam):
    ppi_py = pytest.importorskip("ppi_py")
    rng = np.random.default_rng(seed)
    n, big_n = rng.integers(5, 60), rng.integers(10, 400)
    y, p, pu, _ = _draw(rng, n, big_n, quality=rng.uniform(0, 0.9), accuracy=rng.uniform(0.2, 0.8))
    ours = ppi_mean_interval(y, p, pu, alpha=0.1, lam=lam)
    point = ppi_py.ppi_mean_pointestimate(y, p, pu, lam=lam)
    low, high = ppi_py.ppi_mean_ci(y, p, pu, alpha=0.1, lam=lam)
    assert ours.point == pytest.approx(float(np.squeeze(point)), abs=1e-9)
    assert ours.low == pytest.approx(max(0.0, float(np.squeeze(low))), abs=1e-9)
    assert ours.high == pytest.approx(min(1.0, float(np.squeeze(high))), abs=1e-9)
    assert (ours.n_labels, ours.n_unlabelled, ours.method) == (n, big_n, "ppi++")
    assert 0.0 <= ours.lam <= 1.0


def test_lambda_zero_is_the_labels_alone_and_tuning_follows_the_predictions():
    rng = np.random.default_rng(1)
    y, p, pu, _ = _draw(rng, 400, 4000, quality=0.0)
    plain = ppi_mean_interval(y, p, pu, lam=0.0)
    assert plain.point == pytest.approx(y.mean())
    assert ppi_mean_interval(y, p, pu).lam < 0.15  # noise: the labels carry the estimate
    y, p, pu, _ = _draw(rng, 30, 300, quality=0.9)
    assert ppi_mean_interval(y, p, pu).lam > 0.7  # good predictions carry it


def test_ninety_percent_intervals_cover_and_good_predictions_narrow_them():
    rng = np.random.default_rng(7)
    covered, widths = {q: 0 for q in (0.0, 0.8)}, {q: [] for q in (0.0, 0.8)}
    wilson = []
    draws = 600
    for _ in range(draws):
        for quality in (0.0, 0.8):
            y, p, pu, everything = _draw(rng, 40, 400, quality)
            found = ppi_mean_interval(y, p, pu, alpha=0.1)
            covered[quality] += found.low <= 0.4 <= found.high
            widths[quality].append(found.high - found.low)
            if quality == 0.0:
                alone = labels_only_interval(y, alpha=0.1)
                wilson.append(alone.high - alone.low)
    for quality in covered:
        assert covered[quality] / draws >= 0.85, quality
    # useless predictions: hardly wider than the labels alone; good ones: much narrower
    assert np.mean(widths[0.0]) <= 1.1 * np.mean(wilson)
    assert np.mean(widths[0.8]) <= 0.7 * np.mean(wilson)


def test_labels_only_intervals():
    y = np.array([1, 1, 0, 1, 0, 0, 0, 1, 1, 1], dtype=float)
    wilson = labels_only_interval(y, 0.1, "wilson")
    exact = labels_only_interval(y, 0.1, "clopper-pearson")
    assert wilson.point == exact.point == 0.6
    assert exact.low < wilson.low < 0.6 < wilson.high < exact.high  # exact is the wider
    ones = labels_only_interval(np.ones(5), 0.1)
    assert ones.high == 1.0 and 0.5 < ones.low < 1.0  # never a zero-width interval
    with pytest.raises(ValueError, match="0 or 1"):
        labels_only_interval([0.5, 1.0])
    with pytest.raises(ValueError, match="method"):
        labels_only_interval(y, method="jeffreys")


def test_ppi_refuses_what_it_cannot_estimate():
    with pytest.raises(ValueError, match="at least 2"):
        ppi_mean_interval([1.0], [0.7], [0.5, 0.4])
    with pytest.raises(ValueError, match="same length"):
        ppi_mean_interval([1.0, 0.0], [0.7], [0.5])
    constant = ppi_mean_interval([1.0, 0.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0])
    assert constant.lam == 0.0 and constant.point == pytest.approx(2 / 3)
    everything = ppi_mean_interval([1.0, 0.0, 1.0], [0.9, 0.1, 0.8], [])
    assert everything.lam == 0.0 and everything.n_unlabelled == 0


def _scored(rng, slices=("a", "b", "c"), n=40):
    rows = []
    for s, accuracy in zip(slices, (0.2, 0.5, 0.8), strict=False):
        y = (rng.random(n) < accuracy).astype(float)
        p = np.clip(0.7 * y + 0.3 * rng.random(n), 0, 1)
        for i in range(n):
            rows.append({"id": f"{s}{i}", "slice": s, "p_correct": p[i], "correct": y[i]})
    frame = pd.DataFrame(rows)
    return frame.assign(row_estimate=(frame["p_correct"] > 0.5).astype(float))


def test_slice_intervals_use_the_labelled_rows_and_leave_the_rest_unlabelled():
    rng = np.random.default_rng(3)
    scored = _scored(rng)
    labels = scored[scored["id"].str.match(r"[ab]\d$")][["id", "correct"]]  # 10 of a and b
    labels = pd.concat([labels, pd.DataFrame({"id": ["c0"], "correct": [None]})])
    table = slice_intervals(scored.drop(columns="correct"), labels).set_index("slice")
    assert table.loc["a", "n_labels"] == 10 and table.loc["a", "method"] == "ppi++ wilson"
    assert table.loc["c", "n_labels"] == 0 and pd.isna(table.loc["c", "method"])
    assert np.isnan(table.loc["c", "point"])
    a = scored[scored["slice"] == "a"]
    labelled = a["id"].isin(labels["id"])
    expected = ppi_mean_interval(
        a.loc[labelled, "correct"],
        a.loc[labelled, "row_estimate"],
        a.loc[~labelled, "row_estimate"],
        interval="wilson",
    )
    assert table.loc["a", "point"] == pytest.approx(expected.point)
    assert table.loc["a", "low"] == pytest.approx(expected.low)
    # without row_estimate the predictor is p_correct
    by_p = slice_intervals(scored.drop(columns=["correct", "row_estimate"]), labels)
    assert by_p.set_index("slice").loc["a", "point"] != pytest.approx(table.loc["a", "point"])
    with pytest.raises(ValueError, match="'correct'"):
        slice_intervals(scored, labels.rename(columns={"correct": "label"}))


# ------------------------------------------------------------ the labelling plan and the CSV


def _responses(rng, sizes=(("a", 40), ("b", 25), ("c", 3))) -> pd.DataFrame:
    rows = [
        {"id": f"{s}-{i}", "slice": s, "p_correct": rng.random(), "line": i + 1}
        for s, n in sizes
        for i in range(n)
    ]
    frame = pd.DataFrame(rows)
    return frame.assign(row_estimate=(frame["p_correct"] > 0.5).astype(float))


def test_label_writes_a_stratified_plan_from_a_scored_folder(tmp_path):
    from entropy_sentinel.serve.cli import main

    scored = _responses(np.random.default_rng(0))
    (tmp_path / "scored").mkdir()
    scored.to_parquet(tmp_path / "scored" / "responses.parquet")
    out = tmp_path / "labels.csv"
    assert main(["label", str(tmp_path / "scored"), "--per-slice", "5", "--out", str(out)]) == 0
    plan = pd.read_csv(out, dtype={"id": str})
    assert list(plan.columns) == ["id", "slice", "p_correct", "correct"]
    assert plan["correct"].isna().all()
    assert plan.groupby("slice").size().to_dict() == {"a": 5, "b": 5, "c": 3}  # c: all 3
    assert set(plan["id"]) <= set(scored["id"])
    # one response from each fifth of slice a's p(correct)
    a = scored[scored["slice"] == "a"].sort_values("p_correct")["id"].tolist()
    chosen = sorted(a.index(i) // 8 for i in plan.loc[plan["slice"] == "a", "id"])
    assert chosen == [0, 1, 2, 3, 4]
    # seeded: the same seed gives the same plan, another seed another one
    again, other = tmp_path / "again.csv", tmp_path / "other.csv"
    parquet = str(tmp_path / "scored" / "responses.parquet")
    assert main(["label", parquet, "--per-slice", "5", "--out", str(again)]) == 0
    assert main(["label", parquet, "--per-slice", "5", "--seed", "3", "--out", str(other)]) == 0
    assert again.read_text() == out.read_text() != other.read_text()


def test_every_response_is_about_equally_likely_to_be_chosen():
    """What PPI++ needs of the labelled responses: a fair sample of the slice."""
    from entropy_sentinel.serve.labelling import propose

    scored = _responses(np.random.default_rng(1), sizes=(("a", 37),))
    counts = pd.Series(0, index=scored["id"])
    draws = 400
    for seed in range(draws):
        plan, _ = propose(scored, 6, seed=seed)
        counts[plan["id"]] += 1
    rate = counts / draws
    assert rate.min() >= 6 / 37 * 0.6 and rate.max() <= 7 / 37 * 1.4  # bins of 6 or 7


def test_label_refuses_bad_input_with_the_fix(tmp_path, capsys):
    from entropy_sentinel.serve.cli import main

    scored = _responses(np.random.default_rng(0))
    parquet = tmp_path / "responses.parquet"
    scored.to_parquet(parquet)
    out = str(tmp_path / "labels.csv")
    assert main(["label", str(parquet), "--per-slice", "0", "--out", out]) == 2
    assert "--per-slice 0: label at least 1" in capsys.readouterr().err
    scored.drop(columns="p_correct").to_parquet(tmp_path / "bare.parquet")
    assert main(["label", str(tmp_path / "bare.parquet"), "--out", out]) == 2
    assert "no column 'p_correct'" in capsys.readouterr().err
    assert main(["label", str(tmp_path / "nowhere"), "--out", out]) == 2
    assert "give the folder `entropy-sentinel score --out DIR` wrote" in capsys.readouterr().err
    assert main(["label", str(parquet), "--out", out]) == 0
    assert main(["label", str(parquet), "--out", out]) == 2  # never overwrites labels made
    err = capsys.readouterr().err
    assert "exists (it may hold labels already made)" in err and "--force" in err
    assert main(["label", str(parquet), "--out", out, "--force"]) == 0
    # rows without an id or a p are counted, not chosen
    broken = scored.astype({"id": object})
    broken.loc[0, "id"], broken.loc[1, "p_correct"], broken.loc[2, "id"] = None, np.nan, "a-5"
    broken.to_parquet(parquet)
    assert main(["label", str(parquet), "--per-slice", "40", "--out", out, "--force"]) == 0
    assert "1 no id, 1 no p_correct, 1 repeated id" in capsys.readouterr().err
    assert len(pd.read_csv(out)) == len(scored) - 3


def test_read_labels_keeps_the_good_rows_and_reports_the_bad_ones(tmp_path):
    from entropy_sentinel.serve.labelling import read_labels

    path = tmp_path / "labels.csv"
    path.write_text(
        "id,slice,p_correct,correct\n"
        "a-1,a,0.5,1\n"  # line 2
        "a-2,a,0.5,0\n"
        "a-3,a,0.5,\n"  # not labelled yet
        "a-4,a,0.5,yes\n"  # line 5: not 0/1
        "a-1,a,0.5,0\n"  # line 6: repeated
        "zz,a,0.5,1\n"  # line 7: unknown
        ",a,0.5,1\n"  # line 8: no id
        "b-1,b,0.5,TRUE\n"
        "b-2,b,0.5,2\n"  # line 10
    )
    found = read_labels(path, known_ids=[f"a-{i}" for i in range(5)] + ["b-1", "b-2"])
    assert found.labels.to_dict("list") == {"id": ["a-1", "a-2", "b-1"], "correct": [1.0, 0.0, 1.0]}
    assert found.unlabelled == 1
    assert found.skipped == {"not 0/1": 2, "repeated id": 1, "unknown id": 1, "no id": 1}
    assert found.skipped_at["not 0/1"][0].startswith(f"{path}:5: correct='yes'")
    assert found.skipped_at["not 0/1"][1].startswith(f"{path}:10:")
    assert "already on line 2" in found.skipped_at["repeated id"][0]
    assert found.skipped_at["unknown id"][0].startswith(f"{path}:7:")
    # without known ids every id is taken; another label column by name
    path.write_text("request,label\n7,1\n8,0\n")
    assert read_labels(path, "request", "label").labels["id"].tolist() == ["7", "8"]
    with pytest.raises(ValueError, match=r":1: no column 'correct'.*--label-field"):
        read_labels(path, "request")


def test_the_loop_label_fill_read_estimate(tmp_path):
    """label -> someone fills in the CSV -> read_labels -> PPI++ per slice."""
    from entropy_sentinel.serve.cli import main
    from entropy_sentinel.serve.labelling import read_labels

    rng = np.random.default_rng(5)
    scored = _scored(rng)
    truth = scored.set_index("id")["correct"]
    scored.drop(columns="correct").to_parquet(tmp_path / "responses.parquet")
    out = tmp_path / "labels.csv"
    assert main(["label", str(tmp_path / "responses.parquet"), "--per-slice", "12",
                 "--out", str(out)]) == 0  # fmt: skip
    plan = pd.read_csv(out, dtype={"id": str})
    plan["correct"] = plan["id"].map(truth).astype(int)
    plan.to_csv(out, index=False)
    found = read_labels(out, known_ids=scored["id"])
    assert len(found.labels) == 36 and not found.skipped
    table = slice_intervals(scored.drop(columns="correct"), found.labels).set_index("slice")
    assert (table["n_labels"] == 12).all() and (table["method"] == "ppi++ wilson").all()
    assert ((table["low"] <= table["point"]) & (table["point"] <= table["high"])).all()


def test_the_wilson_style_interval():
    """At lam = 0 without unlabelled responses it is Wilson's interval; it never collapses
    when every label is wrong; with many labels it is the normal one; and it covers."""
    y = np.array([1, 1, 0, 1, 0, 0, 0, 1, 1, 1], dtype=float)
    ours = ppi_mean_interval(y, np.full(10, 0.5), [], interval="wilson")
    wilson = labels_only_interval(y)
    assert (ours.low, ours.high) == pytest.approx((wilson.low, wilson.high), abs=1e-12)
    assert ours.method == "ppi++ wilson"
    rng = np.random.default_rng(2)
    wrong = ppi_mean_interval(np.zeros(5), rng.random(5) * 0.3, rng.random(40) * 0.3)
    assert wrong.high == wrong.low == 0.0  # the normal interval collapses
    wrong = ppi_mean_interval(np.zeros(5), rng.random(5) * 0.3, rng.random(40), interval="wilson")
    assert wrong.low == 0.0 and wrong.high > 0.2
    y, p, pu, _ = _draw(rng, 3000, 30000, quality=0.6)
    normal, score = (ppi_mean_interval(y, p, pu, interval=i) for i in ("normal", "wilson"))
    assert score.point == normal.point
    assert (score.low, score.high) == pytest.approx((normal.low, normal.high), abs=2e-4)
    covered, draws = 0, 400
    for _ in range(draws):  # a rare event, five labels: where the normal interval fails
        y, p, pu, _ = _draw(rng, 10, 200, quality=0.5, accuracy=0.08)
        found = ppi_mean_interval(y, p, pu, interval="wilson")
        covered += found.low <= 0.08 <= found.high
    assert covered / draws >= 0.85
    with pytest.raises(ValueError, match="0 or 1"):
        ppi_mean_interval([0.5, 1.0], [0.5, 0.5], [0.2], interval="wilson")


# ------------------------------------------------------------ the study on the committed testbed

STUDIES = Path(__file__).resolve().parents[1] / "data" / "studies"


def _study_copy(tmp_path: Path, name: str) -> Path:
    folder = STUDIES / name
    if not (folder / "features.parquet").is_file():
        pytest.skip(f"{folder} is not committed (make testbed)")
    (tmp_path / name).mkdir()
    for file in ("features.parquet", "provenance.json"):
        shutil.copyfile(folder / file, tmp_path / name / file)
    return tmp_path / name


def test_the_label_study_runs_on_a_few_testbed_slices(tmp_path):
    """`study labels` on four slices, transfer and leave one slice out: the tables and the
    design are written, every method is there, and PPI++ never collapses to zero width."""
    from entropy_sentinel.evaluate.study import main

    source = _study_copy(tmp_path, "testbed-qwen05b")
    target = _study_copy(tmp_path, "testbed-traffic")
    only = ["gsm8k", "math_level2", "svamp_addition", "word_two_step"]
    quick = ["--sizes", "5", "20", "--repeats", "30", "--jobs", "1"]
    quick += ["--set", "interval_units=4"]  # fewer refits for the label-free interval
    main(["labels", str(source), str(target), *quick, "--only", *only])
    table = pd.read_csv(target / "labels-from-testbed-qwen05b.csv")
    assert sorted(table["n_labels"].unique()) == [5, 20] and (table["slices"] == 4).all()
    assert table["ppi"].nunique() == 4
    for column in ("ppi_coverage", "wilson_coverage", "cp_coverage", "label_free_coverage"):
        assert table[column].between(0, 1).all(), column
    assert (table["ppi_width"] > 0).all() and (table["cp_width"] > table["wilson_width"]).all()
    wilson = table[table["ppi"] == "ppi++ wilson [row_estimate]"].set_index("n_labels")
    assert wilson.loc[20, "ppi_width"] < wilson.loc[5, "ppi_width"]  # labels narrow it
    design = json.loads((target / "labels-from-testbed-qwen05b.json").read_text())
    assert design["protocol"]["repeats"] == 30 and len(design["label_free"]) == 4
    slices = pd.read_csv(target / "labels-from-testbed-qwen05b-slices.csv")
    assert set(slices["slice"]) == set(only) and slices["true"].between(0, 1).all()
    # leave one slice out, with the committed label-free intervals of the same design
    committed = STUDIES / "testbed-qwen05b" / "holdout-loso-default.csv"
    main(["labels", str(source), *quick, "--only", *only[:3], "--label-free", str(committed)])
    loso = pd.read_csv(source / "labels-loso.csv")
    assert (loso["slices"] == 3).all() and sorted(loso["n_labels"].unique()) == [5, 20]
    free = pd.read_csv(committed).query("estimator == 'ATC[ES p]'").set_index("slice")
    written = json.loads((source / "labels-loso.json").read_text())["label_free"]
    assert {r["slice"]: r["low"] for r in written} == free.loc[only[:3], "low"].to_dict()
