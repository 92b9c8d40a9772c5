"""Is a slice of traffic made like the estimator's training rows? Two checks, one verdict.

(a) Settings: the generation settings recorded with the estimator (``settings_from_generation``
of the training rows' provenance, or ``settings_from_request`` of logged request bodies)
against those of the traffic. A key set on one side and not the other counts as a difference:
an unset sampler key means the server's default, which is rarely the training value
(llama-server samples with top-k 40, top-p 0.95 and min-p 0.05 unless told otherwise).

(b) Features: the share of a slice's responses outside the training rows' support (a response
whose nearest training row, in standardised feature space, is farther than ``quantile`` of the
training rows' own nearest-neighbour distances), against the shares of the training slices,
each held out from the others (``FeatureSupport``). Slices differ in accuracy and so in their
features; a plain two-sample test against the training rows flags almost every new slice (on
the testbed a domain classifier separates a held-out slice of the same regime from the rest
with AUROC 0.60-1.00). Comparing with held-out training slices sets the false-alarm rate.

On the testbed the traffic regime (another system prompt, sampler and token limit) left the
features inside the training support, so (b) alone cannot vouch for a regime: a slice is
``same`` only when its settings are known to match, ``shifted`` when either check says so, and
``unknown`` otherwise.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

SAME, SHIFTED, UNKNOWN = "same", "shifted", "unknown"
SETTING_KEYS = (
    "system_prompt_sha256",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "max_tokens",
    "top_logprobs",
)


def _sha(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()[:16]


def _number(value):
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def settings_from_request(body: dict) -> dict:
    """The settings of one logged OpenAI chat/completions request body."""
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    system = [
        m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "system"
    ]
    top = body.get("top_logprobs")
    if top is None and not isinstance(body.get("logprobs"), bool):
        top = body.get("logprobs")  # legacy completions: logprobs is the width
    return {
        "model": body.get("model") if isinstance(body.get("model"), str) else None,
        "system_prompt_sha256": _sha(system[0] if system and isinstance(system[0], str) else None),
        "temperature": _number(body.get("temperature")),
        "top_p": _number(body.get("top_p")),
        "top_k": _number(body.get("top_k")),
        "min_p": _number(body.get("min_p")),
        "max_tokens": _number(body.get("max_completion_tokens", body.get("max_tokens"))),
        "top_logprobs": _number(top),
    }


def settings_from_generation(generation: dict | None) -> dict | None:
    """The settings of a config's ``generation`` block (a study's or a rule's provenance):
    ``settings`` and, for the openai backend, what its ``extra_body`` sends."""
    if not generation or not isinstance(generation.get("settings"), dict):
        return None
    settings = generation["settings"]
    extra = (generation.get("openai") or {}).get("extra_body") or {}
    top_k = extra.get("top_k", settings.get("top_k"))
    return {
        "model": generation.get("model"),
        "system_prompt_sha256": _sha(settings.get("system_prompt")),
        "temperature": _number(settings.get("temperature")),
        "top_p": _number(settings.get("top_p")),
        "top_k": _number(top_k) if top_k not in (0, -1) else None,  # 0/-1: no top-k
        "min_p": _number(extra.get("min_p", settings.get("min_p"))),
        "max_tokens": _number(settings.get("max_new_tokens")),
        "top_logprobs": _number(settings.get("top_k_logprobs")),
    }


def recorded_settings(provenance: dict) -> dict | None:
    """The generation settings a training provenance records: those of its logged requests
    (``settings``), else those of its generation block."""
    return provenance.get("settings") or settings_from_generation(provenance.get("generation"))


def compare_settings(trained: dict | None, served: list[dict] | None) -> tuple[str, dict]:
    """``same``, ``shifted`` or ``unknown`` (either side unrecorded), with each differing key
    as ``{key: [trained, served values]}``."""
    if not trained or not served:
        return UNKNOWN, {}
    differences = {}
    for key in SETTING_KEYS:
        values = sorted({json.dumps(s.get(key)) for s in served})
        if values != [json.dumps(trained.get(key))]:
            differences[key] = [trained.get(key), [json.loads(v) for v in values]]
    return (SHIFTED if differences else SAME), differences


def verdict(settings_state: str, features_state: str) -> str:
    if SHIFTED in (settings_state, features_state):
        return SHIFTED
    return SAME if settings_state == SAME else UNKNOWN


@dataclass
class FeatureSupport:
    """The training rows' support in the estimator's feature space, and how far outside it
    the held-out training slices fell (``slice_shares``)."""

    columns: list[str]
    center: np.ndarray
    scale: np.ndarray
    reference: np.ndarray  # standardised training rows (a seeded sample of at most max_rows)
    radius: float  # ``quantile`` of the reference rows' nearest-neighbour distances
    slice_shares: list[float]  # each training slice's share outside the others' support
    quantile: float
    min_rows: int

    @classmethod
    def fit(
        cls,
        X: np.ndarray,
        slices: np.ndarray,
        columns: list[str],
        *,
        quantile: float = 0.95,
        min_rows: int = 20,
        max_rows: int = 2000,
        seed: int = 42,
    ) -> FeatureSupport:
        X = np.asarray(X, dtype=np.float64)
        slices = np.asarray(slices)
        center, scale = X.mean(axis=0), X.std(axis=0)
        scale[scale == 0] = 1.0
        Z = (X - center) / scale
        shares = []
        for name in np.unique(slices):
            held = slices == name
            if held.sum() >= min_rows and (~held).sum() > 1:
                shares.append(_outside_share(Z[~held], Z[held], quantile))
        keep = np.random.default_rng(seed).permutation(len(Z))[:max_rows]
        reference = Z[np.sort(keep)]
        return cls(
            list(columns), center, scale, reference, _radius(reference, quantile),
            shares, quantile, min_rows,
        )  # fmt: skip

    @property
    def threshold(self) -> float | None:
        """The largest share a same-regime slice is expected to show (None: no training
        slice could be held out)."""
        return max(self.slice_shares) if self.slice_shares else None

    def check(self, X) -> tuple[str, dict]:
        """``same``/``shifted``/``unknown`` for one slice's feature rows, with the evidence."""
        X = np.asarray(X, dtype=np.float64)
        evidence = {"n": len(X), "threshold": self.threshold, "min_rows": self.min_rows}
        if len(X) < self.min_rows or self.threshold is None:
            return UNKNOWN, evidence
        share = _outside_share_of(self.reference, self.radius, (X - self.center) / self.scale)
        evidence["outside_share"] = share
        return (SHIFTED if share > self.threshold else SAME), evidence

    def as_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("columns", "radius", "slice_shares", "quantile")}
        return {**out, "min_rows": self.min_rows, "n_reference": len(self.reference)}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"center": self.center, "scale": self.scale, "reference": self.reference}

    @classmethod
    def from_parts(cls, meta: dict, arrays: dict) -> FeatureSupport:
        return cls(
            meta["columns"], np.asarray(arrays["center"]), np.asarray(arrays["scale"]),
            np.asarray(arrays["reference"]), meta["radius"], meta["slice_shares"],
            meta["quantile"], meta["min_rows"],
        )  # fmt: skip


def _radius(reference: np.ndarray, quantile: float) -> float:
    from sklearn.neighbors import NearestNeighbors

    distances = NearestNeighbors(n_neighbors=2).fit(reference).kneighbors(reference)[0][:, 1]
    return float(np.quantile(distances, quantile))


def _outside_share_of(reference: np.ndarray, radius: float, target: np.ndarray) -> float:
    from sklearn.neighbors import NearestNeighbors

    nearest = NearestNeighbors(n_neighbors=1).fit(reference).kneighbors(target)[0][:, 0]
    return float(np.mean(nearest > radius))


def _outside_share(reference: np.ndarray, target: np.ndarray, quantile: float) -> float:
    return _outside_share_of(reference, _radius(reference, quantile), target)


@dataclass
class TrainingRegime:
    """What an estimator's training rows were made like, and what to do with a slice that is
    not: ``widen`` its interval by ``widen_by`` (what the shift cost on the testbed) or
    ``withhold`` it."""

    settings: dict | None
    support: FeatureSupport
    under_shift: str = "widen"
    widen_by: float = 0.0

    def check(self, rows, served: list[dict] | None) -> tuple[str, dict]:
        """One slice's regime and its evidence: ``rows`` its feature rows (a DataFrame with
        the support's columns), ``served`` the settings of its responses (None: unrecorded)."""
        settings_state, differences = compare_settings(self.settings, served)
        features_state, evidence = self.support.check(rows[self.support.columns].to_numpy())
        return verdict(settings_state, features_state), {
            "settings": settings_state,
            "settings_differ": differences,
            "features": features_state,
            **{f"features_{k}": v for k, v in evidence.items()},
        }

    def adjust(self, estimate: dict, regime: str, under_shift: str | None = None) -> dict:
        """A slice estimate's interval as the regime allows: unchanged unless ``shifted``."""
        if regime != SHIFTED or not np.isfinite(estimate["low"]):
            return estimate
        if (under_shift or self.under_shift) == "withhold":
            covers = "withheld: this slice's traffic was made unlike the training rows"
            return {**estimate, "low": float("nan"), "high": float("nan"), "covers": covers}
        return {
            **estimate,
            "low": max(0.0, estimate["low"] - self.widen_by),
            "high": min(1.0, estimate["high"] + self.widen_by),
            "covers": f"{estimate['covers']}; widened by {self.widen_by} each side because "
            "this slice's traffic was made unlike the training rows (its cost on the testbed)",
        }

    def as_dict(self) -> dict:
        return {
            "settings": self.settings,
            "support": self.support.as_dict(),
            "under_shift": self.under_shift,
            "widen_by": self.widen_by,
        }

    @classmethod
    def from_parts(cls, meta: dict, arrays: dict) -> TrainingRegime:
        support = FeatureSupport.from_parts(meta["support"], arrays)
        return cls(meta["settings"], support, meta["under_shift"], meta["widen_by"])
