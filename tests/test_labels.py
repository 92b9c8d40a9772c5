"""A few labels per slice: PPI++ against the reference package, its coverage and width, the
per-slice intervals, the labelling CSV and `entropy-sentinel label`."""

from __future__ import annotations

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
    assert table.loc["a", "n_labels"] == 10 and table.loc["a", "method"] == "ppi++"
    assert table.loc["c", "n_labels"] == 0 and pd.isna(table.loc["c", "method"])
    assert np.isnan(table.loc["c", "point"])
    a = scored[scored["slice"] == "a"]
    labelled = a["id"].isin(labels["id"])
    expected = ppi_mean_interval(
        a.loc[labelled, "correct"],
        a.loc[labelled, "row_estimate"],
        a.loc[~labelled, "row_estimate"],
    )
    assert table.loc["a", "point"] == pytest.approx(expected.point)
    assert table.loc["a", "low"] == pytest.approx(expected.low)
    # without row_estimate the predictor is p_correct
    by_p = slice_intervals(scored.drop(columns=["correct", "row_estimate"]), labels)
    assert by_p.set_index("slice").loc["a", "point"] != pytest.approx(table.loc["a", "point"])
    with pytest.raises(ValueError, match="'correct'"):
        slice_intervals(scored, labels.rename(columns={"correct": "label"}))
