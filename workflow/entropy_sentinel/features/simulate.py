"""Synthetic feature tables with a known p(correct), for tests and benchmarks.

Every slice shares one conditional p(correct | x) = sigmoid(intercept + slope * x) on the
"max" feature; slices differ only in the distribution of x (pure covariate shift), so a
well-specified, calibrated estimator recovers each slice's accuracy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from entropy_sentinel.features.compute import FEATURE_NAMES

INTERCEPT = 0.0
SLOPE = -2.5  # higher max-entropy -> more likely wrong


def true_probability(x: np.ndarray) -> np.ndarray:
    """The known p(correct | max-entropy = x)."""
    return 1.0 / (1.0 + np.exp(-(INTERCEPT + SLOPE * np.asarray(x, dtype=float))))


def synthetic_features(
    slice_shifts: dict[str, float] | None = None,
    n_per_slice: int = 1000,
    seed: int = 0,
    model: str = "synthetic-model",
    slice_by: str = "domain",
    benchmark: str = "synthetic",
) -> pd.DataFrame:
    """A feature table shaped like results/features/{model}/{benchmark}.parquet.

    slice_shifts maps slice name -> mean of x (larger = harder slice). With
    slice_by="benchmark" each slice is its own benchmark, else a domain of `benchmark`.
    """
    if slice_shifts is None:
        slice_shifts = {"easy": -1.0, "medium": 0.0, "hard": 1.0}
    rng = np.random.default_rng(seed)
    frames = []
    for name, shift in slice_shifts.items():
        n = n_per_slice
        x = rng.normal(shift, 1.0, n)
        correct = rng.random(n) < true_probability(x)
        feats = {f: rng.normal(0.0, 1.0, n) for f in FEATURE_NAMES}
        feats["max"] = x
        # a few features carry noisy copies of the signal, like the real correlated features
        feats["mean"] = 0.5 * x + rng.normal(0.0, 1.0, n)
        feats["se_sum"] = x + rng.normal(0.0, 0.5, n)
        feats["nll_sum"] = x + rng.normal(0.0, 0.7, n)
        n_tokens = rng.integers(5, 500, n)
        # the answer-span features: noise here (the signal is all in x), shaped like the real ones
        feats |= {
            "answer_stated": (rng.random(n) < 0.9).astype(float),
            "answer_se_mean": rng.normal(0.0, 1.0, n),
            "answer_nll_mean": rng.normal(0.0, 1.0, n),
            "answer_nll_max": rng.normal(0.0, 1.0, n),
            "truncated_flag": np.zeros(n),
            "log_tokens": np.log(n_tokens),
        }
        split = np.where(rng.permutation(n) < int(0.8 * n), "train", "test")
        frames.append(
            pd.DataFrame(
                {
                    "item_id": [f"{name}-{i:05d}" for i in range(n)],
                    "model": model,
                    "benchmark": name if slice_by == "benchmark" else benchmark,
                    "domain": name,
                    "split": split,
                    "correct": correct,
                    "n_tokens": n_tokens,
                    "finish_reason": "stop",
                    "truncated": False,
                    **feats,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def shifted_slices(
    n_slices: int = 60, n_per_slice: int = 200, concept_sd: float = 0.4, seed: int = 0
) -> pd.DataFrame:
    """Many slices under both covariate shift (the mean of x varies, U(-2, 2)) and concept
    shift (a per-slice intercept offset, N(0, concept_sd)), which no estimator trained on
    other slices can see: the ground truth for measuring interval coverage under shift."""
    rng = np.random.default_rng(seed)
    shifts = rng.uniform(-2.0, 2.0, n_slices)
    frames = []
    for i, shift in enumerate(shifts):
        table = synthetic_features({f"s{i:03d}": shift}, n_per_slice, seed=seed * 1000 + i)
        offset = rng.normal(0.0, concept_sd)
        p = 1.0 / (1.0 + np.exp(-(INTERCEPT + offset + SLOPE * table["max"].to_numpy())))
        table["correct"] = rng.random(len(table)) < p
        frames.append(table)
    return pd.concat(frames, ignore_index=True)
