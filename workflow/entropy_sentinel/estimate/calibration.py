"""Scores to probabilities and probabilities to a slice's accuracy: Platt or isotonic
calibration of out-of-fold scores, and ATC's threshold (Garg et al. 2022)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

_EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def platt(score: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None):
    """Platt scaling on the logit of a probability (nearly unpenalised)."""
    model = LogisticRegression(C=1e4, l1_ratio=0.0, max_iter=1000)
    return model.fit(logit(score)[:, None], y, sample_weight=weight)


def fit_calibration(score: np.ndarray, y: np.ndarray, method: str):
    """A calibration map fitted on out-of-fold scores: a fitted sklearn model, applied by
    ``calibrate`` (plain sklearn types, so that skops stores it)."""
    if method == "isotonic":
        return IsotonicRegression(out_of_bounds="clip").fit(score, y)
    return platt(score, y)


def calibrate(calibrator, score: np.ndarray) -> np.ndarray:
    if isinstance(calibrator, IsotonicRegression):
        return calibrator.predict(score)
    return calibrator.predict_proba(logit(score)[:, None])[:, 1]


@dataclass(frozen=True)
class ATCThreshold:
    """ATC's threshold on a score: the share of rows above it estimates accuracy. Rows that tie
    at the threshold count with weight ``w``, chosen so the source's share equals its accuracy
    exactly. Without it, a score with many ties (tree-model probabilities, a few labels) puts a
    whole tied block on one side: estimates of 0 or 1 where the truth is 0.1."""

    t: float
    w: float

    @classmethod
    def fit(cls, scores: np.ndarray, y: np.ndarray) -> ATCThreshold:
        k = float(np.mean(y)) * len(scores)  # rows the source's share must count
        if k <= 0:
            return cls(math.inf, 0.0)
        t = float(np.sort(scores)[::-1][math.ceil(k - 1e-9) - 1])  # the ceil(k)-th highest
        above, at = np.sum(scores > t), np.sum(scores == t)
        return cls(t, float((k - above) / at))

    def votes(self, scores: np.ndarray) -> np.ndarray:
        """Each row's part of the share: 1 above the threshold, ``w`` on it, 0 below."""
        scores = np.asarray(scores, dtype=float)
        return (scores > self.t) + self.w * (scores == self.t)

    def share(self, scores: np.ndarray) -> float:
        return float(np.mean(self.votes(scores)))

    def as_dict(self) -> dict[str, float]:
        return asdict(self)
