"""Slice-level accuracy estimators and the panel that fits them, with their shift-aware
intervals (``intervals.SliceInterval``).

Every estimator answers one question: given labelled source rows and unlabelled target rows,
what is the target slice's accuracy? They share one fit of the Entropy Sentinel classifier on
the source rows (``SourceFit``) and differ in how they turn it into a slice estimate:

=====================  =======================================================================
ES                     mean p(correct) of the classifier (the paper)
DoC                    source accuracy + (mean target p - mean out-of-fold source p)
                       (Guillory et al. 2021, difference of confidences); with calibrated
                       p the two source terms nearly cancel and it stays close to ES
ATC[ES p]              ATC on the classifier's own p (Garg et al. 2022)
IW-ES                  the classifier's p recalibrated on source rows reweighted by a
                       source-vs-target domain classifier (covariate-shift importance weights)
Meta                   a regressor from slice descriptors to accuracy, trained on many shifted
                       sub-samples of the source rows (Fu et al. 2023)
Selected               the candidate above with the lowest leave-one-unit-out error on the
                       training data (nested: it never sees the slices it is scored on)
ATC[max], ATC[best]    baselines: ATC on max-entropy (the paper's), and on the feature with the
                       lowest leave-one-unit-out error
train accuracy         baseline: the source accuracy, whatever the target
average confidence     baseline: mean of a univariate Platt model on max-entropy
=====================  =======================================================================

Intervals (``SliceInterval``): the source rows are split into units, the training slices
themselves when there are at least ``min_units`` of them, otherwise k-means pseudo-slices
inside each training slice. Every estimator is refitted without each unit and scored on it;
the slice-level residuals give a split-conformal margin at the nominal level (or, with too
few units for conformal, a Student-t prediction margin). The interval therefore covers the
estimator's error on a *slice it was not trained on*, shift included, not only the sampling
noise of the target rows.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import LeaveOneGroupOut
from sklearn.preprocessing import StandardScaler
from sklearn.utils.parallel import Parallel, delayed  # carries sklearn's config into workers
from threadpoolctl import threadpool_limits

from entropy_sentinel.estimate.calibration import ATCThreshold, logit, platt
from entropy_sentinel.estimate.classifier import EntropySentinel, minority_count
from entropy_sentinel.estimate.intervals import SliceEstimate, SliceInterval, interval_units
from entropy_sentinel.features.compute import FEATURE_NAMES, FeatureSpec

LEVEL = 0.9


# ---------------------------------------------------------------- the shared source fit


@dataclass
class SourceFit:
    """The Entropy Sentinel fitted on source rows, with out-of-fold source predictions."""

    es: EntropySentinel | None
    X: np.ndarray  # source rows x FEATURE_NAMES
    y: np.ndarray  # bool
    p_oof: np.ndarray | None  # out-of-fold p(correct) of the source rows
    _scored: tuple = field(default=(None, None), repr=False)  # the last target, its fold scores

    @classmethod
    def fit(
        cls,
        X: pd.DataFrame,
        y,
        design: dict[str, Any],
        params: dict[str, Any] | None = None,
        feature_spec: FeatureSpec | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> SourceFit:
        """Fit the classifier (grid search unless ``params`` fixes the hyperparameters) with
        its cross-fitted source predictions (``EntropySentinel.p_oof_``), which come with the
        ATC readout; the design's own readout is restored after the fit."""
        y = np.asarray(y, dtype=bool)
        es = EntropySentinel(**{**design, "slice_estimate": "atc"}, params=params)
        es.fit(X, y, allow_degenerate=True, feature_spec=feature_spec, provenance=provenance)
        es.set_params(slice_estimate=design.get("slice_estimate", "atc"))
        features = X.loc[:, list(FEATURE_NAMES)].to_numpy(float)
        return cls(es, features, y, es.p_oof_)

    def fold_scores(self, X: pd.DataFrame) -> list[np.ndarray]:
        """Target rows scored as ``p_oof`` scored the source rows (``EntropySentinel.
        fold_scores``); the last target's scores are kept, as every estimator asks for them."""
        if self._scored[0] is not X:
            self._scored = (X, self.es.fold_scores(X))
        return self._scored[1]

    @classmethod
    def labelled(cls, X: pd.DataFrame, y) -> SourceFit:
        """Source rows without a classifier, for the baselines that need none."""
        return cls(None, X.loc[:, list(FEATURE_NAMES)].to_numpy(float), np.asarray(y, bool), None)

    @property
    def accuracy(self) -> float:
        return float(self.y.mean())


# ---------------------------------------------------------------- the estimators


class SliceEstimator:
    """Base class: ``fit(X, y)`` on labelled source rows, ``estimate(X)`` on a target slice.

    Subclasses implement ``fit_source`` (state beyond the shared SourceFit) and ``point``.
    Passing ``slices`` to ``fit`` also fits the estimator's shift-aware interval.
    """

    name = "?"

    def __init__(self, design: dict[str, Any] | None = None):
        self.design = dict(design or {})

    def fit_source(self, src: SourceFit) -> SliceEstimator:
        return self

    def point(self, src: SourceFit, X: pd.DataFrame, p: np.ndarray) -> float:
        raise NotImplementedError

    def fit(self, X: pd.DataFrame, y, slices=None, level: float = LEVEL) -> SliceEstimator:
        panel = EstimatorPanel([self], self.design, level=level).fit(X, y, slices)
        fitted = panel.fitted_[self.name]
        self.__dict__.update(fitted.__dict__)
        self.source_ = panel.source_
        self.interval_ = panel.intervals_.get(self.name)
        return self

    def estimate(self, X: pd.DataFrame) -> SliceEstimate:
        p = self.source_.es.p_correct(X)
        point = float(np.clip(self.point(self.source_, X, p), 0.0, 1.0))
        if self.interval_ is None:
            return SliceEstimate(point, n=len(X))
        return self.interval_.around(point, len(X))


class ESMean(SliceEstimator):
    name = "ES"

    def point(self, src, X, p):
        return float(p.mean())


class DoC(SliceEstimator):
    name = "DoC"

    def point(self, src, X, p):
        shift = np.mean([s.mean() for s in src.fold_scores(X)]) - src.p_oof.mean()
        return src.accuracy + float(shift)


class ATCOnP(SliceEstimator):
    name = "ATC[ES p]"

    def fit_source(self, src):
        self.threshold_ = src.es.threshold_  # fitted on src.p_oof
        return self

    def point(self, src, X, p):
        return float(np.mean([self.threshold_.share(s) for s in src.fold_scores(X)]))


class ATCFeature(SliceEstimator):
    """ATC on one feature, oriented so that correct rows score higher (reference §5.5)."""

    def __init__(self, feature: str = "max", design=None):
        super().__init__(design)
        self.feature = feature
        self.name = f"ATC[{feature}]"

    def fit_source(self, src):
        x = src.X[:, FEATURE_NAMES.index(self.feature)]
        ok, bad = x[src.y], x[~src.y]
        self.sign_ = (
            1.0 if (ok.mean() if ok.size else 0) >= (bad.mean() if bad.size else 0) else -1.0
        )
        self.threshold_ = ATCThreshold.fit(self.sign_ * x, src.y)
        return self

    def point(self, src, X, p):
        return self.threshold_.share(self.sign_ * X[self.feature].to_numpy(float))


class ImportanceWeightedES(SliceEstimator):
    """Covariate-shift reweighting: weights w(x) = p(target|x)/p(source|x) from a logistic
    domain classifier on the standardised features (clipped to [0.05, 20]); the classifier's
    out-of-fold source p is Platt-recalibrated under those weights, then averaged on target."""

    name = "IW-ES"

    def point(self, src, X, p):
        Xt = X.loc[:, list(FEATURE_NAMES)].to_numpy(float)
        scaler = StandardScaler().fit(np.vstack([src.X, Xt]))
        d = np.r_[np.zeros(len(src.X)), np.ones(len(Xt))]
        domain = LogisticRegression(C=1.0, l1_ratio=0.0, max_iter=1000)
        domain.fit(scaler.transform(np.vstack([src.X, Xt])), d)
        pt = domain.predict_proba(scaler.transform(src.X))[:, 1]
        w = np.clip(pt / (1 - pt) * len(src.X) / len(Xt), 0.05, 20.0)
        model = platt(src.p_oof, src.y, weight=w)
        return float(
            np.mean([model.predict_proba(logit(s)[:, None])[:, 1] for s in src.fold_scores(X)])
        )


def slice_descriptors(X: np.ndarray, p: np.ndarray, atc: ATCThreshold) -> np.ndarray:
    """What the meta-model sees of a slice: moments and quantiles of p, the ATC fraction, and
    the mean of the standardised features (rows are already standardised)."""
    q = np.quantile(p, [0.1, 0.5, 0.9])
    return np.r_[p.mean(), (p**2).mean(), q, atc.share(p), X.mean(axis=0)]


class MetaModel(SliceEstimator):
    """Fu et al. (2023): regress slice accuracy on slice descriptors, trained on ``n_slices``
    sub-samples of the source rows drawn with random exponential tilts along random feature
    directions, so the training slices span a range of shifts and accuracies."""

    name = "Meta"

    def __init__(self, design=None, n_slices: int = 300, seed: int = 0):
        super().__init__(design)
        self.n_slices = n_slices
        self.seed = seed

    def fit_source(self, src):
        rng = np.random.default_rng(self.seed)
        self.scaler_ = StandardScaler().fit(src.X)
        Z = self.scaler_.transform(src.X)
        self.threshold_ = ATCThreshold.fit(src.p_oof, src.y)
        n = len(src.y)
        rows, target = [], []
        for _ in range(self.n_slices):
            direction = rng.normal(size=Z.shape[1])
            score = Z @ direction / math.sqrt(Z.shape[1])
            w = np.exp(rng.uniform(-2, 2) * (score - score.max()))
            size = int(rng.integers(max(10, n // 10), max(11, n // 2)))
            idx = rng.choice(n, size=size, replace=True, p=w / w.sum())
            rows.append(slice_descriptors(Z[idx], src.p_oof[idx], self.threshold_))
            target.append(src.y[idx].mean())
        self.model_ = Ridge(alpha=1.0).fit(np.array(rows), np.array(target))
        return self

    def point(self, src, X, p):
        Z = self.scaler_.transform(X.loc[:, list(FEATURE_NAMES)].to_numpy(float))
        rows = [slice_descriptors(Z, s, self.threshold_) for s in src.fold_scores(X)]
        return float(self.model_.predict(np.array(rows)).mean())


class TrainAccuracy(SliceEstimator):
    name = "train accuracy"

    def point(self, src, X, p):
        return src.accuracy


class AverageConfidence(SliceEstimator):
    """Mean of a univariate Platt model on one feature (max-entropy by default)."""

    name = "average confidence"

    def __init__(self, feature: str = "max", design=None):
        super().__init__(design)
        self.feature = feature

    def fit_source(self, src):
        x = src.X[:, FEATURE_NAMES.index(self.feature)]
        self.scaler_ = StandardScaler().fit(x[:, None])
        self.model_ = None
        if minority_count(src.y) > 0:  # one class: the prior is all there is
            self.model_ = LogisticRegression(C=1.0, l1_ratio=0.0).fit(
                self.scaler_.transform(x[:, None]), src.y
            )
        return self

    def point(self, src, X, p):
        if self.model_ is None:
            return src.accuracy
        x = self.scaler_.transform(X[[self.feature]].to_numpy(float))
        return float(self.model_.predict_proba(x)[:, 1].mean())


class Selected(SliceEstimator):
    """The candidate with the lowest leave-one-unit-out MAE on the source data; the panel
    makes the choice, so it is nested inside the training slices."""

    def __init__(self, candidates: Sequence[str], name: str = "Selected", design=None):
        super().__init__(design)
        self.candidates = tuple(candidates)
        self.name = name
        self.choice_: SliceEstimator | None = None

    def point(self, src, X, p):
        return self.choice_.point(src, X, p)


class SliceCalibrated(SliceEstimator):
    """A base estimator mapped onto the accuracy scale across slices: a + b * base, with a
    and b fitted by least squares (weighted by unit size) on the leave-one-unit-out estimates
    of the training units, where the truth is known. A classifier trained on few positives
    ranks slices well but squeezes its estimates toward the training accuracy; the map
    stretches them back. The panel fits it from the interval residuals, and scores it on each
    unit with a map fitted without that unit, so its interval and its selection stay nested."""

    MIN_UNITS = 4

    def __init__(self, base: str = "ES", design=None):
        super().__init__(design)
        self.base = base
        self.name = f"{base}-cal"
        self.coef_ = (0.0, 1.0)
        self.base_: SliceEstimator | None = None

    @staticmethod
    def fit_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
        """(a, b) of y ~ a + b x, b in [0, 10]; the identity when x does not vary."""
        if x.size < SliceCalibrated.MIN_UNITS or np.ptp(x) < 1e-6:
            return 0.0, 1.0
        mx, my = np.average(x, weights=w), np.average(y, weights=w)
        b = float(np.clip(np.sum(w * (x - mx) * (y - my)) / np.sum(w * (x - mx) ** 2), 0, 10))
        return float(my - b * mx), b

    def fit_units(self, base_points, truth, sizes) -> np.ndarray:
        """Fit the map on every unit; returns each unit's estimate from a map fitted without it."""
        x, y, w = (np.asarray(v, dtype=float) for v in (base_points, truth, sizes))
        self.coef_ = self.fit_line(x, y, w)
        keep = ~np.eye(x.size, dtype=bool)
        return np.array(
            [
                np.clip(np.dot(self.fit_line(x[k], y[k], w[k]), (1.0, x[i])), 0, 1)
                for i, k in enumerate(keep)
            ]
        )

    def point(self, src, X, p):
        return float(np.dot(self.coef_, (1.0, self.base_.point(src, X, p))))


ES_FAMILY = ("ES", "DoC", "ATC[ES p]", "IW-ES", "Meta", "ES-cal", "ATC[ES p]-cal")
BASELINES = ("ATC[max]", "ATC[best]", "train accuracy", "average confidence")
REPORTED = (*ES_FAMILY, "Selected", *BASELINES)


def default_estimators(design: dict[str, Any]) -> list[SliceEstimator]:
    """Every reported estimator, plus ATC on each feature (candidates of ATC[best])."""
    atc = [ATCFeature(f, design) for f in FEATURE_NAMES]
    return [
        ESMean(design),
        DoC(design),
        ATCOnP(design),
        ImportanceWeightedES(design),
        MetaModel(design),
        SliceCalibrated("ES", design),
        SliceCalibrated("ATC[ES p]", design),
        Selected(ES_FAMILY, "Selected", design),
        *atc,
        Selected([a.name for a in atc], "ATC[best]", design),
        TrainAccuracy(design),
        AverageConfidence("max", design),
    ]


# ---------------------------------------------------------------- the panel


class EstimatorPanel:
    """Fit every estimator on one source set, with their intervals, sharing the work."""

    def __init__(
        self,
        estimators: Sequence[SliceEstimator] | None = None,
        design: dict[str, Any] | None = None,
        level: float = LEVEL,
        min_units: int = 10,
        seed: int = 0,
        n_jobs: int = 1,
    ):
        self.design = dict(design or {})
        self.n_jobs = n_jobs
        self.estimators = list(estimators) if estimators is not None else None
        self.level = level
        self.min_units = min_units
        self.seed = seed

    def _fit_all(self, src: SourceFit) -> dict[str, SliceEstimator]:
        """Every estimator that needs only the source fit (not the units' residuals)."""
        return {
            e.name: copy.deepcopy(e).fit_source(src)
            for e in self.estimators
            if not isinstance(e, Selected | SliceCalibrated)
        }

    def _points(self, fitted, src, X: pd.DataFrame) -> dict[str, float]:
        p = src.es.p_correct(X)
        out = {}
        for name, e in fitted.items():
            uses_classifier = not isinstance(e, ATCFeature | TrainAccuracy | AverageConfidence)
            if src.es.degenerate_ and uses_classifier:
                out[name] = src.accuracy  # one class in the source: the prior is all there is
            else:
                out[name] = float(np.clip(e.point(src, X, p), 0, 1))
        return out

    def fit(
        self,
        X: pd.DataFrame,
        y,
        slices=None,
        feature_spec: FeatureSpec | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> EstimatorPanel:
        """Fit on labelled source rows; with ``slices``, also the leave-one-unit-out residuals,
        the nested selections and every estimator's interval."""
        if self.estimators is None:
            self.estimators = default_estimators(self.design)
        X = X.reset_index(drop=True)
        y = np.asarray(y, dtype=bool)
        # many tiny fits: BLAS threads cost more than they save (3x slower measured)
        with threadpool_limits(limits=1):
            self.source_ = SourceFit.fit(X, y, self.design, None, feature_spec, provenance)
            self.fitted_ = self._fit_all(self.source_)
            self.intervals_: dict[str, SliceInterval] = {}
            self.residuals_ = pd.DataFrame()
            if slices is not None:
                self._fit_intervals(X, y, np.asarray(slices))
        return self

    def _fit_intervals(self, X: pd.DataFrame, y: np.ndarray, slices: np.ndarray) -> None:
        units, unit_kind = interval_units(slices, self.source_.X, self.min_units, seed=self.seed)

        def held_out(rest, held):
            if minority_count(y[rest]) < 2:
                return None
            # the design's hyperparameters were selected on all source rows; refits reuse them
            src = SourceFit.fit(X.loc[rest], y[rest], self.design, self.source_.es.best_params_)
            points = self._points(self._fit_all(src), src, X.loc[held])
            unit = int(units[held[0]])
            return {"unit": unit, "n": len(held), "true": float(y[held].mean()), **points}

        # one unit leaves nothing to train on when it is held out
        splits = LeaveOneGroupOut().split(X, y, units) if len(np.unique(units)) > 1 else []
        rows = Parallel(n_jobs=self.n_jobs, prefer="threads")(
            delayed(held_out)(rest, held) for rest, held in splits
        )
        rows = [r for r in rows if r is not None]
        res = pd.DataFrame(rows)
        self.residuals_ = res
        self.unit_kind_ = unit_kind
        for e in self.estimators:
            if isinstance(e, SliceCalibrated) and e.base in self.fitted_ and len(res):
                calibrated = copy.copy(e)
                calibrated.base_ = self.fitted_[e.base]
                res[e.name] = calibrated.fit_units(res[e.base], res["true"], res["n"])
                self.fitted_[e.name] = calibrated
        errors = {
            name: (res[name] - res["true"]).to_numpy() if len(res) else np.array([])
            for name in self.fitted_
        }
        for e in self.estimators:
            if isinstance(e, Selected):
                mae = {  # a slice-calibrated candidate is missing when no unit could be scored
                    c: np.mean(np.abs(errors[c])) if errors[c].size else np.inf
                    for c in e.candidates
                    if c in errors
                }
                best = min(mae, key=mae.get)
                chosen = copy.copy(e)
                chosen.choice_ = self.fitted_[best]
                chosen.chosen_ = best
                self.fitted_[e.name] = chosen
                errors[e.name] = errors[best]
        chosen = self.choices()
        for name, err in errors.items():
            source = chosen.get(name, name)
            points = res[source].to_numpy() if len(res) else np.array([])
            sizes = res["n"].to_numpy() if len(res) else np.array([])
            interval = SliceInterval.from_residuals(err, points, sizes, self.level, unit_kind)
            if points.size >= SliceCalibrated.MIN_UNITS:
                _, slope = SliceCalibrated.fit_line(points, res["true"].to_numpy(), sizes)
                checked = (float(points.min()), float(points.max()), max(1.0, slope))
                interval = replace(interval, checked=checked)
            self.intervals_[name] = interval

    def choices(self) -> dict[str, str]:
        """What each Selected estimator chose."""
        return {n: e.chosen_ for n, e in self.fitted_.items() if isinstance(e, Selected)}

    def estimate(
        self, X: pd.DataFrame, names: Sequence[str] = REPORTED
    ) -> dict[str, SliceEstimate]:
        """Every named estimator's estimate (with interval, when fitted) on one target slice."""
        X = X.reset_index(drop=True)
        names = [n for n in names if n in self.fitted_]  # Selected needs fitted intervals
        with threadpool_limits(limits=1):
            points = self._points({n: self.fitted_[n] for n in names}, self.source_, X)
        out = {}
        for name in names:
            interval = self.intervals_.get(name)
            out[name] = (
                interval.around(points[name], len(X))
                if interval
                else SliceEstimate(points[name], n=len(X))
            )
        return out
