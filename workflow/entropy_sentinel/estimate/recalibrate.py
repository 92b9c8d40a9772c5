"""Recalibration: an estimator's slice readout refitted on labelled rows of a new regime, its
classifier untouched.

A regime change (another system prompt, sampler or token limit) moves p(correct) against the
truth while the classifier still ranks responses; a few labelled slices of the new traffic then
refit the one number that turns scores into a slice's accuracy, and the other slices are
estimated label-free as before.

- ``atc``: ATC's threshold refitted on the labelled rows' fold scores, pooled over the fold
  models (each row scored by every fold model, its label repeated), so the labelled rows'
  share above it equals their accuracy (ties weighted as in ``ATCThreshold.fit``).
- ``calibrated`` and ``mean``: the line a + b * p keeps its slope b (1 for ``mean``) and its
  intercept a is refitted so the labelled rows' mean equals their accuracy. One parameter, as
  for ATC: a slope from a few labelled slices (2-3 points of 40 rows) would be mostly noise.
  A recalibrated ``mean`` estimator reads out as ``calibrated`` with slope 1.

Kept: the classifier (``model_``, ``fold_models_``, ``fold_calibrator_``), the interval (learnt
from the training slices' residuals; the testbed study measures its coverage after
recalibration) and the regime's feature support: the classifier's p is still learnt from the
training rows, so "inside their support" is what the features check must keep asking.
Replaced: the regime's generation settings become the new regime's (None when unknown), so the
regime check says ``same`` for traffic of the regime the readout was refitted on and not for
the training regime's, whose readout is gone.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from entropy_sentinel.estimate.calibration import ATCThreshold


def labels01(y) -> np.ndarray:
    """Labels as a 0/1 array; anything but 0/1 (or booleans) is refused with where it is."""
    values = pd.Series(np.asarray(y, dtype=object)).map(
        lambda v: float(v) if isinstance(v, bool | int | float | np.number | np.bool_) else np.nan
    )
    bad = np.flatnonzero(~values.isin([0.0, 1.0]).to_numpy())
    if len(bad):
        shown = [np.asarray(y, dtype=object)[i] for i in bad[:3]]
        raise ValueError(
            f"labels must be 1 (correct) or 0 (wrong): {len(bad)} are not, e.g. rows "
            f"{bad[:3].tolist()} ({shown}); drop unlabelled rows before recalibrating"
        )
    return values.to_numpy(dtype=np.int64)


def readout(estimator) -> dict[str, Any]:
    """What turns p(correct) into a slice estimate: ATC's threshold or the line a + b * p."""
    if estimator.slice_estimate == "atc":
        return {"slice_estimate": "atc", "atc_threshold": estimator.threshold_.as_dict()}
    a, b = estimator.slice_map_ if estimator.slice_estimate == "calibrated" else (0.0, 1.0)
    return {"slice_estimate": estimator.slice_estimate, "slice_map": [float(a), float(b)]}


def recalibrate(
    estimator,
    X,
    y,
    slices=None,
    *,
    settings: dict | None = None,
    spec=None,
    provenance: dict[str, Any] | None = None,
):
    """A copy of ``estimator`` whose readout is refitted on labelled rows ``X``, ``y`` (1/0) of
    a new regime (see the module's docstring). ``slices``: each row's slice, recorded;
    ``settings``: the new regime's generation settings (None: unknown); ``spec``: the rows'
    feature spec, checked like ``estimate``'s; ``provenance``: more to record (e.g. the labels
    file's sha256)."""
    check_is_fitted(estimator, "model_")
    estimator.check_spec(spec)
    y01 = labels01(y)
    if len(y01) != len(X):
        raise ValueError(f"{len(X)} rows but {len(y01)} labels")
    if len(y01) == 0 or y01.min() == y01.max():
        which = "no labelled row" if len(y01) == 0 else f"all {len(y01)} labelled rows are "
        which += "" if len(y01) == 0 else ("correct" if y01[0] else "wrong")
        raise ValueError(
            f"cannot recalibrate on {which}: the readout needs labelled rows of both classes "
            "(a threshold fitted on one class puts every slice at 0 or 1); label more rows, "
            "or rows of more slices"
        )
    new = copy.deepcopy(estimator)
    before = estimator.estimate_from_rows(estimator.row_estimates(X)).point
    if estimator.slice_estimate == "atc":
        scores = estimator.fold_scores(X)
        new.threshold_ = ATCThreshold.fit(np.concatenate(scores), np.tile(y01, len(scores)))
    else:
        b = float(estimator.slice_map_[1]) if estimator.slice_estimate == "calibrated" else 1.0
        new.slice_map_ = (float(y01.mean() - b * estimator.p_correct(X).mean()), b)
        new.slice_estimate = "calibrated"
    if estimator.regime_ is not None:
        new.regime_ = dataclasses.replace(new.regime_, settings=settings)
    names = sorted(pd.unique(np.asarray(slices, dtype=str))) if slices is not None else None
    record = {
        "n_rows": int(len(y01)),
        "n_correct": int(y01.sum()),
        "accuracy": float(y01.mean()),
        "slices": names,
        "estimate_before": float(before),
        "readout_before": readout(estimator),
        "readout": readout(new),
        "settings": settings,
        "training_settings": estimator.regime_.settings if estimator.regime_ else None,
        "recalibrated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **(provenance or {}),
    }
    if "recalibrated" in estimator.provenance_:
        record["previous"] = estimator.provenance_["recalibrated"]
    new.provenance_ = {**estimator.provenance_, "recalibrated": record}
    return new
