"""The Entropy Sentinel estimator: a per-response p(correct) classifier whose mean is a slice's
estimated accuracy (reference §5.1-§5.2).

    est = make_estimator("random_forest", calibrate=True, balance=True, features="17D")
    est.fit(train_df, train_df["correct"])
    est.estimate_accuracy(unlabelled_df)
    est.save("es.skops"); load_estimator("es.skops").predict_proba(new_rows)

Persistence uses skops with an explicit allow-list of types, never pickle.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedShuffleSplit
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from .features import FEATURE_SETS
from .provenance import jsonable

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
    "sklearn.dummy.DummyClassifier",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.tree._tree.Tree",
)
FORMAT_VERSION = 1


class TooFewSamplesError(ValueError):
    """The minority class has fewer than 2 training rows; the config is skipped (§5.2)."""


def canonical_classifier(name: str) -> str:
    """Validated classifier name, resolving the original's aliases."""
    name = _ALIASES.get(name, name)
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; expected one of {CLASSIFIERS}")
    return name


def feature_names(features: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Feature column names for a family name ("17D", ...) or an explicit list."""
    if isinstance(features, str):
        if features not in FEATURE_SETS:
            raise ValueError(f"unknown feature set {features!r}; expected {list(FEATURE_SETS)}")
        return tuple(FEATURE_SETS[features])
    return tuple(features)


def base_classifier(classifier: str, balance: bool, seed: int = 42):
    """The unfitted base estimator of §5.2."""
    classifier = canonical_classifier(classifier)
    if classifier == "random_forest":
        return RandomForestClassifier(
            n_estimators=100,
            random_state=seed,
            class_weight="balanced_subsample" if balance else None,
            n_jobs=1,
        )
    if classifier == "logistic_regression":
        # l1_ratio=1 is the L1 penalty (`penalty="l1"` is deprecated in scikit-learn >= 1.8)
        return LogisticRegression(
            solver="liblinear",
            l1_ratio=1.0,
            max_iter=10000,
            random_state=seed,
            class_weight="balanced" if balance else None,
        )
    return MLPClassifier(
        max_iter=10000, random_state=seed, activation="relu", early_stopping=True, alpha=0.001
    )


def oversample(X: np.ndarray, y: np.ndarray, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Random oversampling of the minority class to parity (RandomOverSampler-equivalent)."""
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2 or counts[0] == counts[1]:
        return X, y
    minority = classes[np.argmin(counts)]
    rng = np.random.default_rng(seed)
    extra = rng.choice(np.flatnonzero(y == minority), size=counts.max() - counts.min())
    idx = np.concatenate([np.arange(len(y)), extra])
    return X[idx], y[idx]


def minority_count(y: np.ndarray) -> int:
    """Size of the smaller class (0 when only one class is present)."""
    y = np.asarray(y, dtype=bool)
    return int(min(y.sum(), (~y).sum()))


def grid_search(X: np.ndarray, y: np.ndarray, classifier: str, balance: bool, seed: int = 42):
    """Best base estimator by AUROC on one stratified 70/30 split (the newest original), refit
    on all of X. With a single parameter set there is nothing to search."""
    base = base_classifier(classifier, balance, seed)
    grid = PARAM_GRIDS[canonical_classifier(classifier)]
    cv = StratifiedShuffleSplit(n_splits=1, test_size=0.3, random_state=seed)
    search = GridSearchCV(base, grid, scoring="roc_auc", cv=cv, n_jobs=1, error_score=np.nan)
    search.fit(X, y)
    return search.best_estimator_, search.best_params_


def calibrate_model(model, X: np.ndarray, y: np.ndarray, method: str = "sigmoid"):
    """Cross-validated calibration of an (unfitted copy of the) selected model on X, y."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration {method!r}; expected {CALIBRATION_METHODS}")
    cv = min(5, minority_count(y))
    return CalibratedClassifierCV(clone(model), method=method, cv=cv).fit(X, y)


@dataclass
class EntropySentinel:
    """A slice-accuracy estimator over named feature columns."""

    classifier: str = "random_forest"
    calibrate: bool = True
    balance: bool = True
    features: str | tuple[str, ...] = "17D"
    calibration: str = "sigmoid"
    seed: int = 42
    feature_names_: tuple[str, ...] = field(default=(), init=False)
    scaler_: StandardScaler | None = field(default=None, init=False, repr=False)
    model_: Any = field(default=None, init=False, repr=False)
    best_params_: dict[str, Any] = field(default_factory=dict, init=False)
    provenance_: dict[str, Any] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.classifier = canonical_classifier(self.classifier)
        if self.calibration not in CALIBRATION_METHODS:
            raise ValueError(f"unknown calibration {self.calibration!r}")
        self.feature_names_ = feature_names(self.features)

    def config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-serialisable."""
        features = self.features if isinstance(self.features, str) else list(self.features)
        return {
            "classifier": self.classifier,
            "calibrate": bool(self.calibrate),
            "balance": bool(self.balance),
            "features": features,
            "calibration": self.calibration,
            "seed": int(self.seed),
        }

    def _matrix(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            missing = [c for c in self.feature_names_ if c not in X.columns]
            if missing:
                raise KeyError(f"feature columns missing: {missing}")
            X = X.loc[:, list(self.feature_names_)]
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names_):
            raise ValueError(f"expected {len(self.feature_names_)} feature columns, got {X.shape}")
        return X

    def fit(
        self,
        X: pd.DataFrame | np.ndarray,
        y,
        provenance: dict[str, Any] | None = None,
        allow_degenerate: bool = False,
    ):
        """Scale, (over)sample, grid-search and optionally calibrate on labelled rows.

        With fewer than 2 rows of a class there is nothing to learn: this raises
        ``TooFewSamplesError``, or with ``allow_degenerate`` fits the class prior (every
        slice is then estimated at the training accuracy) and records why.
        """
        X = self._matrix(X)
        y = np.asarray(y, dtype=bool).astype(np.int64)
        degenerate = None
        if minority_count(y) < 2:
            degenerate = f"minority class has {minority_count(y)} rows; need at least 2 to fit"
            if not allow_degenerate:
                raise TooFewSamplesError(degenerate)
        self.scaler_ = StandardScaler().fit(X)
        Xs = self.scaler_.transform(X)
        if degenerate:
            model, self.best_params_ = DummyClassifier(strategy="prior").fit(Xs, y), {}
        else:
            Xf, yf = Xs, y
            if self.balance and self.classifier == "mlp":
                Xf, yf = oversample(Xs, y, self.seed)
            model, self.best_params_ = grid_search(Xf, yf, self.classifier, self.balance, self.seed)
            if self.calibrate:
                model = calibrate_model(model, Xf, yf, self.calibration)
        self.model_ = model
        self.provenance_ = {
            "degenerate": degenerate,
            "n_train": int(len(y)),
            "train_accuracy": float(y.mean()),
            "sklearn_version": sklearn.__version__,
            "trained_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **(provenance or {}),
        }
        return self

    def _check_fitted(self) -> None:
        if self.model_ is None:
            raise RuntimeError("estimator is not fitted")

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """p(correct) per row (1-D)."""
        self._check_fitted()
        proba = self.model_.predict_proba(self.scaler_.transform(self._matrix(X)))
        classes = list(self.model_.classes_)
        return proba[:, classes.index(1)] if 1 in classes else np.zeros(len(proba))

    def estimate_accuracy(self, X: pd.DataFrame | np.ndarray) -> float:
        """Estimated accuracy of a slice: the mean predicted p(correct)."""
        return float(np.mean(self.predict_proba(X)))

    def metadata(self) -> dict[str, Any]:
        """Config, feature names and provenance, as stored with a saved estimator."""
        return {
            "format_version": FORMAT_VERSION,
            "config": self.config(),
            "feature_names": list(self.feature_names_),
            "best_params": {k: jsonable(v) for k, v in self.best_params_.items()},
            "provenance": {k: jsonable(v) for k, v in self.provenance_.items()},
        }

    def save(self, path: str | Path) -> Path:
        """Write a skops file (model, scaler, metadata) and a human-readable JSON sidecar."""
        import skops.io as sio

        self._check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = self.metadata()
        # metadata travels as a JSON string so skops stores only plain types besides the model
        payload = {"model": self.model_, "scaler": self.scaler_, "metadata": json.dumps(meta)}
        tmp = path.with_name(path.name + ".tmp")
        sio.dump(payload, tmp)
        tmp.replace(path)
        sidecar = path.with_name(path.name + ".json")
        sidecar.write_text(json.dumps(meta, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> EntropySentinel:
        """Load a saved estimator, refusing any type outside the allow-list."""
        import skops.io as sio

        untrusted = sio.get_untrusted_types(file=path)
        unexpected = sorted(set(untrusted) - set(TRUSTED_TYPES))
        if unexpected:
            raise ValueError(f"{path} contains types outside the allow-list: {unexpected}")
        payload = sio.load(path, trusted=list(untrusted))
        if not isinstance(payload, dict) or not {"model", "scaler", "metadata"} <= set(payload):
            raise ValueError(f"{path} is not a saved Entropy Sentinel")
        meta = json.loads(payload["metadata"])
        config = dict(meta["config"])
        if isinstance(config["features"], list):
            config["features"] = tuple(config["features"])
        est = cls(**config)
        est.feature_names_ = tuple(meta["feature_names"])
        est.scaler_ = payload["scaler"]
        est.model_ = payload["model"]
        est.best_params_ = meta.get("best_params", {})
        est.provenance_ = meta.get("provenance", {})
        return est


def make_estimator(
    classifier: str = "random_forest",
    calibrate: bool = True,
    balance: bool = True,
    features: str | tuple[str, ...] = "17D",
    seed: int = 42,
    calibration: str = "sigmoid",
) -> EntropySentinel:
    """An unfitted EntropySentinel."""
    return EntropySentinel(
        classifier=classifier,
        calibrate=calibrate,
        balance=balance,
        features=features,
        calibration=calibration,
        seed=seed,
    )


def estimator_from_config(cfg: dict[str, Any]) -> EntropySentinel:
    """An unfitted EntropySentinel from config["estimator"] (extra keys are ignored)."""
    return make_estimator(
        classifier=cfg.get("classifier", "random_forest"),
        calibrate=bool(cfg.get("calibrate", True)),
        balance=bool(cfg.get("balance", True)),
        features=cfg.get("features", "17D"),
        seed=int(cfg.get("seed", 42)),
        calibration=cfg.get("calibration", "sigmoid"),
    )


def load_estimator(path: str | Path) -> EntropySentinel:
    """Load a saved EntropySentinel; `load_estimator(p).predict_proba(rows)` scores new rows."""
    return EntropySentinel.load(path)
