"""A slice's estimate with its interval, and the shift-aware interval learnt from
leave-one-unit-out residuals (units: training slices, or k-means pseudo-slices inside them)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SliceEstimate:
    """A slice's estimated accuracy and its interval; `covers` says what the interval is for."""

    point: float
    low: float = float("nan")
    high: float = float("nan")
    level: float = float("nan")
    covers: str = "no interval"
    n: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _binomial_var(accuracy, n) -> np.ndarray:
    a = np.clip(np.asarray(accuracy, dtype=float), 0.05, 0.95)
    return a * (1 - a) / np.maximum(np.asarray(n, dtype=float), 1.0)


@dataclass(frozen=True)
class SliceInterval:
    """A margin around a slice estimate, learnt from held-out unit residuals.

    A residual has two parts: the estimator's error under shift (variance ``shift_var``,
    estimated from the residuals by the method of moments) and the sampling noise of the
    slice's n rows (a(1-a)/n). Residuals are normalised by their expected scale
    sqrt(shift_var + a(1-a)/n_unit); ``quantile`` is the conformal quantile of those scores,
    and a target slice of n rows gets margin = quantile * sqrt(shift_var + a(1-a)/n).
    """

    quantile: float
    shift_var: float
    level: float
    method: str
    n_units: int
    unit: str
    # (low, high, stretch) of the held-out unit estimates: a target estimated beyond them gets
    # a margin wider by stretch times the distance (stretch: the slope of the truth on them)
    checked: tuple[float, float, float] = (0.0, 1.0, 1.0)

    @property
    def covers(self) -> str:
        text = (
            f"{self.level:.0%} {self.method} interval for the true accuracy of a slice the "
            f"estimator was not trained on, from leave-one-out residuals over {self.n_units} "
            f"{self.unit}s (shift between slices and the slice's own sampling noise)"
        )
        if self.unit.startswith("pseudo-slice"):  # measured: 0.73-0.88 on the CPU study
            text += (
                "; it sees only the shift inside the training slices, and a new domain may "
                "shift further: train on 10 or more slices for the shift between them"
            )
        return text

    def margin(self, point: float, n: int) -> float:
        return float(self.quantile * np.sqrt(self.shift_var + _binomial_var(point, n)))

    def around(self, point: float, n: int = 0) -> SliceEstimate:
        """The interval around ``point`` for a slice of ``n`` rows, wider where ``point`` lies
        beyond the estimates the residuals checked (extrapolation is never narrow)."""
        low, high, stretch = self.checked
        m = self.margin(point, n) + stretch * max(0.0, low - point, point - high)
        return SliceEstimate(
            point, max(0.0, point - m), min(1.0, point + m), self.level, self.covers, n
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SliceInterval:
        names = ("quantile", "shift_var", "level", "method", "n_units", "unit")
        return cls(**{k: d[k] for k in names}, checked=tuple(d.get("checked", (0.0, 1.0, 1.0))))

    @classmethod
    def from_residuals(cls, residuals, points, sizes, level: float, unit: str) -> SliceInterval:
        """Split-conformal quantile (the ceil((n+1)·level)-th smallest normalised |residual|)
        when there are enough units; otherwise a Student-t quantile on the normalised scores
        (assumes normal residuals); with fewer than 2 units, an interval of [0, 1]."""
        r = np.abs(np.asarray(residuals, dtype=float))
        n = r.size
        if n < 2:
            return cls(1e6, 1.0, level, "uninformative (fewer than 2 units)", n, unit)
        sampling = _binomial_var(points, sizes)
        shift_var = float(max(np.mean(r**2 - sampling), 1e-4))
        scores = np.sort(r / np.sqrt(shift_var + sampling))
        k = math.ceil((n + 1) * level)
        if k <= n:
            return cls(float(scores[k - 1]), shift_var, level, "split-conformal", n, unit)
        from scipy import stats  # here: reading an interval (inspect) needs no SciPy

        t = stats.t.ppf((1 + level) / 2, n - 1)
        q = float(t * np.sqrt(np.mean(scores**2)) * np.sqrt(1 + 1 / n))
        return cls(q, shift_var, level, "Student-t (too few units for conformal)", n, unit)


def interval_units(
    slices: np.ndarray, X: np.ndarray, min_units: int = 10, min_rows: int = 8, seed: int = 0
) -> tuple[np.ndarray, str]:
    """Leave-one-out units: the training slices when there are ``min_units`` of them, else
    k-means pseudo-slices (at least ``min_rows`` rows each) inside every training slice."""
    names, code = np.unique(np.asarray(slices, dtype=str), return_inverse=True)
    if len(names) >= min_units:
        return code, "training slice"
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    Z = StandardScaler().fit_transform(X)
    units = np.zeros(len(code), dtype=np.int64)
    per_slice = math.ceil(min_units / len(names))
    next_id = 0
    for s in range(len(names)):
        rows = np.flatnonzero(code == s)
        k = max(1, min(per_slice, len(rows) // min_rows))
        labels = (
            np.zeros(len(rows), int)
            if k == 1
            else KMeans(k, n_init=3, random_state=seed).fit_predict(Z[rows])
        )
        units[rows] = next_id + labels
        next_id += k
    return units, "pseudo-slice (k-means cluster of a training slice)"
