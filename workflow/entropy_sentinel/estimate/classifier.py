"""The Entropy Sentinel classifier: per-response p(correct) whose mean is a slice's estimated
accuracy (reference §5.1-§5.2), as a scikit-learn classifier.

    est = EntropySentinel("random_forest", calibrate=True, balance=True, features="17D")
    est.fit(train_df, train_df["correct"])
    est.predict_proba(unlabelled_df)[:, 1]      # p(correct) per response
    est.estimate(unlabelled_df)                 # SliceEstimate: point, low, high
    est.save("es.skops"); load_estimator("es.skops")

Fitting, fixed against the original's flaws (reference §9):
- Scaling, oversampling (MLP) and the model are one pipeline, so the grid search and the
  calibration folds resample only their training part; calibration is fitted on rows that
  were never resampled, so the calibrated p keeps the true class prior.
- Every penalty is explicit: L1 logistic regression is ``l1_ratio=1`` (scikit-learn >= 1.8),
  the MLP's L2 is ``alpha``.

Persistence uses skops with an explicit allow-list of types, never pickle. A saved estimator
stores the feature spec its rows were computed with (definitions, entropy variant, segment, k,
log-probs mode); scoring rows computed another way raises FeatureSpecMismatch.
"""

from __future__ import annotations

import datetime as _dt
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, StratifiedShuffleSplit
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from entropy_sentinel.estimate.calibration import ATCThreshold, calibrate, fit_calibration
from entropy_sentinel.estimate.intervals import SliceEstimate, SliceInterval
from entropy_sentinel.estimate.regime import TrainingRegime
from entropy_sentinel.estimate.saved import FORMAT_VERSION, check_format, unreadable
from entropy_sentinel.features.compute import FEATURE_SETS, FeatureSpec
from entropy_sentinel.provenance import atomic_path, jsonable, write_json

CLASSIFIERS = ("random_forest", "logistic_regression", "mlp")
# the original's name for the MLP, accepted as an alias
_ALIASES = {"neural_network": "mlp"}
CALIBRATION_METHODS = ("sigmoid", "isotonic")

PARAM_GRIDS: dict[str, dict[str, list[Any]]] = {
    "random_forest": {"max_depth": [3, 5, 10], "min_samples_split": [2, 5, 10]},
    "logistic_regression": {"C": [0.5, 2.0, 10.0]},
    "mlp": {
        "hidden_layer_sizes": [(5,), (8,), (10,), (15,), (20,), (8, 4), (10, 5), (15, 8)],
    },
}

# Types a saved estimator may contain beyond skops' defaults; anything else refuses to load.
TRUSTED_TYPES = (
    "entropy_sentinel.estimate.classifier.EntropySentinel",
    "imblearn.over_sampling._random_over_sampler.RandomOverSampler",
    "imblearn.pipeline.Pipeline",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.isotonic.IsotonicRegression",
    "sklearn.dummy.DummyClassifier",
    "sklearn.model_selection._split.StratifiedKFold",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.tree._tree.Tree",
)
SLICE_ESTIMATES = ("atc", "calibrated", "mean")


class TooFewSamplesError(ValueError):
    """The minority class has fewer than 2 training rows; the config is skipped (§5.2)."""


class FeatureSpecMismatch(ValueError):
    """Rows were computed with other feature settings than the estimator was trained on."""


def canonical_classifier(name: str) -> str:
    """Validated classifier name, resolving the original's aliases."""
    name = _ALIASES.get(name, name)
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; expected one of {CLASSIFIERS}")
    return name


def feature_names(features) -> tuple[str, ...] | None:
    """Feature column names for a family name ("17D", ...), an explicit list, or None (all
    columns, positionally)."""
    if features is None:
        return None
    if isinstance(features, str):
        if features not in FEATURE_SETS:
            raise ValueError(f"unknown feature set {features!r}; expected {list(FEATURE_SETS)}")
        return tuple(FEATURE_SETS[features])
    return tuple(features)


def minority_count(y) -> int:
    """Size of the smaller class (0 when only one class is present)."""
    _, counts = np.unique(np.asarray(y), return_counts=True)
    return int(counts.min()) if len(counts) == 2 else 0


def base_classifier(classifier: str, balance: bool, seed: int = 42):
    """The unfitted base model of §5.2, every penalty explicit."""
    classifier = canonical_classifier(classifier)
    if classifier == "random_forest":
        return RandomForestClassifier(
            n_estimators=100,
            random_state=seed,
            class_weight="balanced_subsample" if balance else None,
            n_jobs=1,
        )
    if classifier == "logistic_regression":
        return LogisticRegression(
            solver="liblinear",
            l1_ratio=1.0,  # L1
            max_iter=10000,
            random_state=seed,
            class_weight="balanced" if balance else None,
        )
    return MLPClassifier(
        max_iter=10000, random_state=seed, activation="relu", early_stopping=True, alpha=0.001
    )


def make_pipeline(classifier: str, balance: bool, seed: int = 42):
    """Scaler (+ oversampler for the balanced MLP) + model. Resampling happens inside fit only,
    so any cross-validation around the pipeline resamples its training folds alone."""
    model = base_classifier(classifier, balance, seed)
    if balance and canonical_classifier(classifier) == "mlp":
        # here: imbalanced-learn is slow to import; a model without it loads without it
        from imblearn.over_sampling import RandomOverSampler
        from imblearn.pipeline import Pipeline as ImbPipeline

        return ImbPipeline(
            [
                ("scale", StandardScaler()),
                ("oversample", RandomOverSampler(random_state=seed)),
                ("model", model),
            ]
        )
    return Pipeline([("scale", StandardScaler()), ("model", model)])


def grid_search(
    X, y, classifier: str, balance: bool, seed: int = 42, halving: bool = False, refit=True
):
    """Best pipeline by AUROC on one stratified 70/30 split (the newest original), refit on all
    of X; returns (fitted pipeline, or None without ``refit``; best params). ``halving``:
    successive halving over rows on that split (a third of the candidates go on at each step;
    fewer fits, other picks maybe)."""
    grid = {f"model__{k}": v for k, v in PARAM_GRIDS[canonical_classifier(classifier)].items()}
    cv = StratifiedShuffleSplit(n_splits=1, test_size=0.3, random_state=seed)
    options = {"scoring": "roc_auc", "cv": cv, "n_jobs": 1, "error_score": np.nan, "refit": refit}
    if halving:
        from sklearn.experimental import enable_halving_search_cv  # noqa: F401
        from sklearn.model_selection import HalvingGridSearchCV

        options |= {"random_state": seed, "factor": 3}
        search = HalvingGridSearchCV(make_pipeline(classifier, balance, seed), grid, **options)
    else:
        search = GridSearchCV(make_pipeline(classifier, balance, seed), grid, **options)
    search.fit(X, y)
    params = {k.removeprefix("model__"): v for k, v in search.best_params_.items()}
    return (search.best_estimator_ if refit else None), params


def calibrate_model(pipeline, X, y, method: str = "sigmoid", seed: int = 42):
    """Cross-validated calibration of (unfitted copies of) the selected pipeline on X, y. Each
    fold fits the pipeline (resampling its training part) and calibrates on held-out rows
    that were never resampled."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration {method!r}; expected {CALIBRATION_METHODS}")
    cv = StratifiedKFold(n_splits=min(5, minority_count(y)), shuffle=True, random_state=seed)
    return CalibratedClassifierCV(clone(pipeline), method=method, cv=cv).fit(X, y)


class EntropySentinel(ClassifierMixin, BaseEstimator):
    """Binary classifier of response correctness over named feature columns.

    Parameters follow §5.2: ``classifier`` (random_forest, logistic_regression, mlp),
    ``calibrate`` (+ ``calibration`` method), ``balance`` (class weights, or in-fold
    oversampling for the MLP), ``features`` (a family name, a list of columns, or None for
    all columns), ``seed``. ``params`` fixes the model's hyperparameters and skips the grid
    search (used for fast refits of an already selected design).

    ``slice_estimate`` turns p(correct) into a slice's accuracy: ``mean`` is the paper's mean
    p; ``calibrated`` maps it by a line a + b * mean p (``slice_map_``) that
    ``evaluate.protocol.fit_deployed`` fits across the training slices, leaving each out (a
    plain ``fit`` keeps the identity); ``atc`` counts the share of rows above ATC's
    threshold, fitted on out-of-fold p of the training rows and applied to the fold models' p.
    """

    def __init__(
        self,
        classifier: str = "logistic_regression",
        calibrate: bool = True,
        balance: bool = True,
        features: str | tuple[str, ...] | None = "3D+answer",
        calibration: str = "sigmoid",
        seed: int = 42,
        params: dict[str, Any] | None = None,
        slice_estimate: str = "atc",
    ):
        self.classifier = classifier
        self.calibrate = calibrate
        self.balance = balance
        self.features = features
        self.calibration = calibration
        self.seed = seed
        self.params = params
        self.slice_estimate = slice_estimate

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    # ------------------------------------------------------------ input handling

    def _select(self, X):
        names = feature_names(self.features)
        if names is None:
            return X
        if isinstance(X, pd.DataFrame):
            missing = [c for c in names if c not in X.columns]
            if missing:
                raise KeyError(f"feature columns missing: {missing}")
            return X.loc[:, list(names)]
        X = np.asarray(X)
        if X.ndim == 2 and X.shape[1] != len(names):
            raise ValueError(f"expected {len(names)} feature columns {names}, got {X.shape[1]}")
        return X

    def config(self) -> dict[str, Any]:
        """The design parameters, JSON-serialisable."""
        features = self.features if isinstance(self.features, str | None) else list(self.features)
        return {
            "classifier": canonical_classifier(self.classifier),
            "calibrate": bool(self.calibrate),
            "balance": bool(self.balance),
            "features": features,
            "calibration": self.calibration,
            "seed": int(self.seed),
            "slice_estimate": self.slice_estimate,
        }

    # ------------------------------------------------------------ fitting

    def fit(
        self,
        X,
        y,
        *,
        allow_degenerate: bool = False,
        feature_spec: FeatureSpec | None = None,
        provenance: dict[str, Any] | None = None,
    ):
        """Grid-search, fit and optionally calibrate on labelled rows.

        With fewer than 2 rows of a class there is nothing to learn: this raises
        ``TooFewSamplesError``, or with ``allow_degenerate`` fits the class prior (every slice
        is then estimated at the training accuracy) and records why in ``degenerate_``.
        """
        classifier = canonical_classifier(self.classifier)
        if self.calibration not in CALIBRATION_METHODS:
            raise ValueError(f"unknown calibration {self.calibration!r}")
        if self.slice_estimate not in SLICE_ESTIMATES:
            raise ValueError(
                f"slice_estimate must be one of {SLICE_ESTIMATES}, not {self.slice_estimate!r}"
            )
        X, y = validate_data(self, self._select(X), y)
        check_classification_targets(y)
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type not in ("binary", "unknown") and len(np.unique(y)) > 1:
            raise ValueError(
                f"Only binary classification is supported. The type of the target is {y_type}."
            )
        self.classes_ = np.unique(y)
        y01 = (y == self.classes_[-1]).astype(np.int64)
        self.degenerate_ = None
        if minority_count(y01) < 2:
            self.degenerate_ = (
                f"minority class has {minority_count(y01)} rows"
                + (" (only 1 class present)" if len(self.classes_) == 1 else "")
                + "; need at least 2 rows of each class to fit"
            )
            if not allow_degenerate:
                raise TooFewSamplesError(self.degenerate_)
            self.model_ = DummyClassifier(strategy="prior").fit(X, y01)
            self.best_params_ = {}
            self.fold_models_, self.fold_calibrator_ = [], None
            self.p_oof_ = np.full(len(y01), y01.mean())
        else:
            if self.params is None:
                model, self.best_params_ = grid_search(X, y01, classifier, self.balance, self.seed)
            else:
                self.best_params_ = dict(self.params)
                model = make_pipeline(classifier, self.balance, self.seed)
                model.set_params(**{f"model__{k}": v for k, v in self.params.items()})
                if not self.calibrate:  # calibrate_model fits copies of its own
                    model.fit(X, y01)
            if self.calibrate:
                model = calibrate_model(model, X, y01, self.calibration, self.seed)
            self.model_ = model
            self.fold_models_, self.fold_calibrator_, self.p_oof_ = [], None, None
            if self.slice_estimate == "atc":
                self._cross_fit(X, y01, classifier)
        self.slice_map_ = (0.0, 1.0)
        self.threshold_ = None
        if self.p_oof_ is not None:
            self.threshold_ = ATCThreshold.fit(self.p_oof_, y01.astype(bool))
        self.feature_spec_ = feature_spec or FeatureSpec()
        self.interval_ = None
        self.regime_ = None  # what the training rows were made like (see deploy)
        self.provenance_ = {
            "n_train": int(len(y01)),
            "train_accuracy": float(y01.mean()),
            "sklearn_version": sklearn.__version__,
            "trained_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **(provenance or {}),
        }
        return self

    def _cross_fit(self, X: np.ndarray, y01: np.ndarray, classifier: str) -> None:
        """Out-of-fold p(correct) of the training rows (``p_oof_``): 3-fold models of the
        selected design, uncalibrated, their held-out scores mapped through the design's
        calibration fitted on those scores. What is fitted on ``p_oof_`` (ATC's threshold, the
        slice estimators) must see target rows scored the same way (``fold_scores``)."""
        folds = StratifiedKFold(min(3, minority_count(y01)), shuffle=True, random_state=self.seed)
        params = {f"model__{k}": v for k, v in self.best_params_.items()}
        self.fold_models_, score = [], np.empty(len(y01))
        for fit_rows, held in folds.split(X, y01):
            if minority_count(y01[fit_rows]) < 2:
                model = DummyClassifier(strategy="prior")
            else:
                model = make_pipeline(classifier, self.balance, self.seed).set_params(**params)
            self.fold_models_.append(model.fit(X[fit_rows], y01[fit_rows]))
            score[held] = model.predict_proba(X[held])[:, 1]
        self.fold_calibrator_ = (
            fit_calibration(score, y01, self.calibration) if self.calibrate else None
        )
        if self.fold_calibrator_ is not None:
            score = calibrate(self.fold_calibrator_, score)
        self.p_oof_ = score

    # ------------------------------------------------------------ scoring

    def predict_proba(self, X) -> np.ndarray:
        """(n, 2) probabilities of classes_ (p(correct) is column 1); a prior-only fit on one
        class gives that class probability 1."""
        check_is_fitted(self, "model_")
        X = validate_data(self, self._select(X), reset=False)
        if len(self.classes_) == 1:
            return np.ones((len(X), 1))
        return self.model_.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        proba = self.predict_proba(X)
        if proba.shape[1] == 1:
            return np.full(len(proba), self.classes_[0])
        return self.classes_[(proba[:, 1] >= 0.5).astype(int)]

    def p_correct(self, X) -> np.ndarray:
        """p(correct) per row, also for a prior-only fit on one class (0 or 1 then)."""
        proba = self.predict_proba(X)
        if proba.shape[1] == 2:
            return proba[:, 1]
        return np.full(len(proba), float(bool(self.classes_[0])))

    def check_spec(self, spec: FeatureSpec | dict | None) -> None:
        """Raise FeatureSpecMismatch when rows were computed with other feature settings."""
        check_is_fitted(self, "model_")
        if spec is None:
            return
        if isinstance(spec, dict):
            spec = FeatureSpec.from_dict(spec)
        problems = self.feature_spec_.mismatches(spec)
        if problems:
            raise FeatureSpecMismatch(
                "these rows cannot be scored by this estimator: "
                + "; ".join(problems)
                + ". Recompute the features with the estimator's settings "
                f"({self.feature_spec_.as_dict()}) or retrain it on rows like these."
            )

    def fold_scores(self, X) -> list[np.ndarray]:
        """Rows scored as ``p_oof_`` scored the training rows: one array per fold model, through
        the same calibration (the deployed p averages several models, so it spreads less)."""
        check_is_fitted(self, "model_")
        if not self.fold_models_:
            return [self.p_correct(X)]
        X = validate_data(self, self._select(X), reset=False)
        scores = [model.predict_proba(X)[:, 1] for model in self.fold_models_]
        if self.fold_calibrator_ is None:
            return scores
        return [calibrate(self.fold_calibrator_, s) for s in scores]

    def row_estimates(self, X) -> np.ndarray:
        """Each row's part of its slice's estimate, which is their mean (clipped to [0, 1]):
        p(correct) for ``slice_estimate="mean"``, a + b * p for ``"calibrated"``, and for
        ``"atc"`` the row's ATC vote (1 above the threshold, 0 below) averaged over the fold
        models. Rows of a stream aggregate by their mean."""
        if self.slice_estimate == "atc":
            return np.mean([self.threshold_.votes(s) for s in self.fold_scores(X)], axis=0)
        a, b = self.slice_map_ if self.slice_estimate == "calibrated" else (0.0, 1.0)
        return a + b * self.p_correct(X)

    def deploy(
        self, interval: SliceInterval | None, slice_map=None, regime: TrainingRegime | None = None
    ) -> EntropySentinel:
        """Attach what is fitted around this classifier across its training slices (see
        ``evaluate.protocol.fit_deployed``): the interval of its slice estimate, when given
        the line a + b * mean p of ``slice_estimate="calibrated"``, and what its training rows
        were made like (``regime``, for the regime check)."""
        check_is_fitted(self, "model_")
        self.interval_ = interval.as_dict() if interval is not None else None
        if slice_map is not None:
            self.slice_map_ = (float(slice_map[0]), float(slice_map[1]))
        self.regime_ = regime
        return self

    def estimate(self, X, spec: FeatureSpec | dict | None = None) -> SliceEstimate:
        """The slice's estimated accuracy with the stored shift-aware interval (see
        intervals.SliceInterval), if the estimator has one."""
        self.check_spec(spec)
        return self.estimate_from_rows(self.row_estimates(X))

    def estimate_from_rows(self, row_estimates) -> SliceEstimate:
        """``estimate`` for a slice whose ``row_estimates`` are already computed."""
        r = np.asarray(row_estimates, dtype=np.float64)
        point = float(np.clip(r.mean(), 0.0, 1.0)) if r.size else float("nan")
        if self.interval_ is None:
            return SliceEstimate(point, n=int(r.size))
        return SliceInterval.from_dict(self.interval_).around(point, int(r.size))

    def recalibrate(self, X, y, slices=None, **options) -> EntropySentinel:
        """A copy whose slice readout (ATC's threshold, or the line's intercept) is refitted on
        labelled rows of a new regime, the classifier untouched: see estimate.recalibrate."""
        from entropy_sentinel.estimate.recalibrate import recalibrate

        return recalibrate(self, X, y, slices, **options)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> EntropySentinel:
        """An unfitted estimator from a validated config["estimator"] (the schema holds the
        defaults; other keys are ignored). Unknown names fail here, before any fit."""
        canonical_classifier(cfg["classifier"])
        feature_names(cfg["features"])
        names = ("classifier", "calibrate", "balance", "features", "calibration", "seed")
        return cls(**{k: cfg[k] for k in (*names, "slice_estimate")})

    # ------------------------------------------------------------ persistence

    def metadata(self) -> dict[str, Any]:
        """Config, features, feature spec, interval and provenance, as stored when saved."""
        check_is_fitted(self, "model_")
        names = getattr(self, "feature_names_in_", None)
        return {
            "format_version": FORMAT_VERSION,
            "config": self.config(),
            "feature_names": [str(n) for n in names] if names is not None else None,
            "n_features_in": int(self.n_features_in_),
            "classes": [jsonable(c) for c in self.classes_],
            "feature_spec": self.feature_spec_.as_dict(),
            "interval": self.interval_,
            "atc_threshold": self.threshold_.as_dict() if self.threshold_ else None,
            "slice_map": list(self.slice_map_),
            "degenerate": self.degenerate_,
            "regime": self.regime_.as_dict() if self.regime_ else None,
            "best_params": {k: jsonable(v) for k, v in self.best_params_.items()},
            "provenance": {k: jsonable(v) for k, v in self.provenance_.items()},
        }

    def save(self, path: str | Path) -> Path:
        """Write a skops file (model + metadata) and a human-readable JSON sidecar; a failed
        write leaves neither a partial file nor its temporary behind."""
        sio = _skops_io()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = self.metadata()
        # metadata travels as a JSON string so skops stores only plain types besides the model
        payload = {
            "model": self.model_,
            "fold_models": list(self.fold_models_),
            "fold_calibrator": self.fold_calibrator_,
            "support": self.regime_.support.arrays() if self.regime_ else None,
            "metadata": json.dumps(meta),
        }
        with atomic_path(path) as tmp:
            sio.dump(payload, tmp)
        write_json(meta, path.with_name(path.name + ".json"))
        return path

    @classmethod
    def load(cls, path: str | Path) -> EntropySentinel:
        """Load a saved estimator, refusing any type outside the allow-list."""
        sio = _skops_io()
        path = Path(path)
        try:
            untrusted = sio.get_untrusted_types(file=path)
            unexpected = sorted(set(untrusted) - set(TRUSTED_TYPES))
            if unexpected:
                raise ValueError(f"{path} contains types outside the allow-list: {unexpected}")
            payload = sio.load(path, trusted=list(untrusted))
        except (zipfile.BadZipFile, EOFError, KeyError, json.JSONDecodeError) as err:
            raise unreadable(path, err) from err
        if not isinstance(payload, dict) or not {"model", "metadata"} <= set(payload):
            raise ValueError(f"{path} is not a saved Entropy Sentinel")
        meta = check_format(json.loads(payload["metadata"]), path)
        config = dict(meta["config"])
        if isinstance(config["features"], list):
            config["features"] = tuple(config["features"])
        est = cls(**config, params=meta["best_params"] or None)
        est.model_ = payload["model"]
        est.fold_models_ = list(payload["fold_models"])
        est.fold_calibrator_ = payload["fold_calibrator"]
        threshold = meta["atc_threshold"]
        est.threshold_ = ATCThreshold(**threshold) if threshold else None
        est.slice_map_ = tuple(meta["slice_map"])
        est.classes_ = np.asarray(meta["classes"])
        est.n_features_in_ = meta["n_features_in"]
        if meta["feature_names"] is not None:
            est.feature_names_in_ = np.asarray(meta["feature_names"], dtype=object)
        est.feature_spec_ = FeatureSpec.from_dict(meta["feature_spec"])
        est.interval_ = meta["interval"]
        est.degenerate_ = meta["degenerate"]
        regime = meta.get("regime")
        est.regime_ = TrainingRegime.from_parts(regime, payload["support"]) if regime else None
        est.best_params_ = meta["best_params"]
        est.provenance_ = meta["provenance"]
        return est


class _NoTorch:
    """An import hook that refuses torch: skops' trusted-type list walks every scikit-learn
    package, and its array-API layer then imports torch (seconds) for types no estimator of
    ours holds."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("torch is not needed to load an estimator", name=name)
        return None


def _skops_io():
    """``skops.io``, imported without torch (unless torch is already loaded)."""
    import sys

    if "skops.io" in sys.modules or "torch" in sys.modules:
        import skops.io

        return skops.io
    hook = _NoTorch()
    sys.meta_path.insert(0, hook)
    try:
        import skops.io
    finally:
        sys.meta_path.remove(hook)
    return skops.io


def load_estimator(path: str | Path) -> EntropySentinel:
    """Load a saved EntropySentinel: `load_estimator(p).estimate(rows)` scores a slice."""
    return EntropySentinel.load(path)
