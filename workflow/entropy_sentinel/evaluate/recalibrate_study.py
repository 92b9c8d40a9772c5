"""What recalibration buys on a new regime: labels on a few slices, estimates on the others.

The estimator is trained as deployed (``fit_deployed``) on every graded row of one regime
(``source``). On another regime (``target``), every choice of m labelled slices (all their
rows labelled, or ``n`` drawn per slice, one seeded draw per choice) recalibrates its readout
(``estimate.recalibrate``); each OTHER slice of the target is then estimated label-free,
before and after, against two baselines from the same labels: the training rows' accuracy,
and the labelled slices' pooled accuracy taken as every other slice's. A choice whose labels
are all of one class cannot recalibrate and is counted as skipped.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from entropy_sentinel.estimate.recalibrate import readout, recalibrate
from entropy_sentinel.evaluate.protocol import clean_features, fit_deployed, slice_labels

SIZES = (1, 2, 3)
PER_SLICE = (None, 20)  # None: every row of a labelled slice
ESTIMATES = {
    "before": "point_before",
    "after": "point_after",
    "labelled_accuracy": "labelled_accuracy",
    "train_accuracy": "train_accuracy",
}


def recalibrate_study(
    source: str | Path,
    target: str | Path,
    design: dict,
    sizes=SIZES,
    per_slice=PER_SLICE,
    seed: int = 0,
    only: list[str] | None = None,
    n_jobs: int = 2,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(per m and labels table, one row per choice and other slice, what the design JSON
    adds: the estimator's readout and its label-free estimate per target slice)."""
    slice_by = design["slice_by"]
    source_rows, _ = clean_features(pd.read_parquet(Path(source) / "features.parquet"))
    target_rows, _ = clean_features(pd.read_parquet(Path(target) / "features.parquet"))
    if only:
        source_rows = source_rows[slice_labels(source_rows, slice_by).isin(only)]
        target_rows = target_rows[slice_labels(target_rows, slice_by).isin(only)]
    _, estimator = fit_deployed(source_rows, slice_by, design, n_jobs=n_jobs)
    train_accuracy = float(source_rows["correct"].mean())
    target_rows = target_rows.reset_index(drop=True)
    slices = slice_labels(target_rows, slice_by)
    groups = {name: target_rows[slices == name] for name in sorted(slices.unique())}
    before = {name: estimator.estimate(rows) for name, rows in groups.items()}
    long, skipped = [], {}
    draw = 0
    for m in sizes:
        for labelled in itertools.combinations(groups, m):
            for n in per_slice:
                draw += 1
                rng = np.random.default_rng([seed, draw])
                rows = pd.concat(
                    [
                        g if n is None or n >= len(g) else g.iloc[rng.permutation(len(g))[:n]]
                        for g in (groups[name] for name in labelled)
                    ]
                )
                kind = "all" if n is None else f"{n} per slice"
                y = rows["correct"].to_numpy(dtype=int)
                try:
                    new = recalibrate(estimator, rows, y, slice_labels(rows, slice_by))
                except ValueError:  # labels of one class only
                    skipped[(m, kind)] = skipped.get((m, kind), 0) + 1
                    continue
                for name, other in groups.items():
                    if name in labelled:
                        continue
                    after, old = new.estimate(other), before[name]
                    long.append(
                        {
                            "m": m,
                            "labels": kind,
                            "labelled": "+".join(labelled),
                            "n_labelled": len(y),
                            "slice": name,
                            "n": len(other),
                            "true": float(other["correct"].mean()),
                            "point_before": old.point,
                            "low_before": old.low,
                            "high_before": old.high,
                            "point_after": after.point,
                            "low_after": after.low,
                            "high_after": after.high,
                            "labelled_accuracy": float(y.mean()),
                            "train_accuracy": train_accuracy,
                        }
                    )
    long = pd.DataFrame(long)
    free = [{"slice": name, "true": float(groups[name]["correct"].mean()), **e.as_dict()}
            for name, e in before.items()]  # fmt: skip
    extra = {"readout": readout(estimator), "train_accuracy": train_accuracy, "label_free": free}
    return summarise(long, skipped), long, extra


def summarise(long: pd.DataFrame, skipped: dict) -> pd.DataFrame:
    """Per m and labels: mean and median |estimate - truth| over every (choice, other slice)
    of each estimate, and the interval's coverage and median width before and after."""
    rows = []
    for (m, kind), d in long.groupby(["m", "labels"], sort=False):
        row = {
            "m": m,
            "labels": kind,
            "choices": d["labelled"].nunique(),
            "skipped": skipped.get((m, kind), 0),
            "estimates": len(d),
        }
        for name, column in ESTIMATES.items():
            error = (d[column] - d["true"]).abs()
            row[f"mae_{name}"] = float(error.mean())
            row[f"median_{name}"] = float(error.median())
        for when in ("before", "after"):
            inside = (d[f"low_{when}"] <= d["true"]) & (d["true"] <= d[f"high_{when}"])
            row[f"coverage_{when}"] = float(inside.mean())
            row[f"width_{when}"] = float((d[f"high_{when}"] - d[f"low_{when}"]).median())
        rows.append(row)
    return pd.DataFrame(rows)
